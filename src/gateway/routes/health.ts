/**
 * GET /health always answers 200 with the state in the body (cog style): STARTING,
 * READY, BUSY or UNHEALTHY with the reason. GET /health/ready answers 503 unless work can
 * be taken, for load balancers. GET /metrics is the Prometheus exposition.
 */
import type { FastifyInstance } from 'fastify';
import { countByStatus } from '../../store/requests.js';
import type { AppDeps } from '../app.js';

export type HealthStatus = 'STARTING' | 'READY' | 'BUSY' | 'UNHEALTHY' | 'DRAINING';

export function healthOf(deps: AppDeps): { status: HealthStatus; reason?: string } {
  if (deps.draining?.()) return { status: 'DRAINING', reason: 'the server is shutting down' };
  const s = deps.engine.state;
  if (s === 'READY' || s === 'BUSY' || s === 'STARTING') return { status: s };
  return { status: 'UNHEALTHY', reason: deps.engine.lastError ?? `engine ${s.toLowerCase()}` };
}

export function registerHealthRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.get('/health', async () => {
    const h = healthOf(deps);
    const counts = await countByStatus(deps.db);
    return {
      status: h.status,
      ...(h.reason ? { reason: h.reason } : {}),
      model: deps.config.model,
      engine: deps.engine.facts ?? null,
      engine_restarts: deps.engine.restarts,
      queue: { waiting: counts.QUEUED ?? 0, running: counts.PROCESSING ?? 0 },
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
