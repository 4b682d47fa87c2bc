/**
 * GET /health always answers 200 with the state in the body (cog style): STARTING,
 * READY, BUSY or UNHEALTHY with the reason, plus what the queue describes (the engine on
 * the embedded default, the fleet of workers when scaled out). GET /health/ready answers
 * 503 unless work can be taken, for load balancers. GET /metrics is the Prometheus
 * exposition.
 */
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../app.js';
import type { Readiness } from '../../queue/types.js';

export type { HealthStatus } from '../../queue/types.js';

export function healthOf(deps: AppDeps): Readiness {
  if (deps.draining?.()) return { status: 'DRAINING', reason: 'the server is shutting down' };
  return deps.queue.readiness();
}

export function registerHealthRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.get('/health', async () => {
    const h = healthOf(deps);
    const [details, depth] = await Promise.all([deps.queue.describe(), deps.queue.depth()]);
    return {
      status: h.status,
      ...(h.reason ? { reason: h.reason } : {}),
      model: deps.config.model,
      ...details,
      queue: { waiting: depth.waiting, running: depth.running, oldest_age_s: Number(depth.oldestAgeS.toFixed(3)) },
    };
  });

  app.get('/health/ready', async (_req, reply) => {
    const h = healthOf(deps);
    const ok = h.status === 'READY' || h.status === 'BUSY';
    return reply.status(ok ? 200 : 503).send({ status: h.status, ...(h.reason ? { reason: h.reason } : {}) });
  });

  app.get('/metrics', async (_req, reply) => {
    const body = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(body);
  });
}
