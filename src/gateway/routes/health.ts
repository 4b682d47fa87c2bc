/**
 * GET /health always answers 200 with the state in the body (cog style): STARTING,
 * READY, BUSY or UNHEALTHY with the reason, plus what the queue describes (the engine on
 * the embedded default, the fleet of workers when scaled out). GET /health/ready answers
 * 503 unless work can be taken, for load balancers. GET /metrics is the Prometheus
 * exposition.
 */
import type { AppDeps, App } from '../app.js';
import type { Readiness } from '../../queue/types.js';
import { Health, ReadyCheck } from '../../contract/health-schema.js';
import { json, ref, text } from '../route-schema.js';

export function healthOf(deps: AppDeps): Readiness {
  if (deps.draining?.()) return { status: 'DRAINING', reason: 'the server is shutting down' };
  return deps.queue.readiness();
}

const tagged = { tags: ['health'] };

export function registerHealthRoutes(app: App, deps: AppDeps): void {
  const healthSchema = { ...tagged, operationId: 'getHealth', summary: 'State: STARTING, READY, BUSY, UNHEALTHY (with the reason)', response: { 200: json(ref(Health), 'Health') } };
  app.get('/health', { schema: healthSchema }, async () => {
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

  const readySchema = {
    ...tagged,
    operationId: 'getReadiness',
    summary: '200 when work can be taken, else 503',
    response: { 200: json(ref(ReadyCheck), 'Ready'), 503: json(ref(ReadyCheck), 'Not ready') },
  };
  app.get('/health/ready', { schema: readySchema }, async (_req, reply) => {
    const h = healthOf(deps);
    const ok = h.status === 'READY' || h.status === 'BUSY';
    return reply.status(ok ? 200 : 503).send({ status: h.status, ...(h.reason ? { reason: h.reason } : {}) });
  });

  const metricsSchema = { ...tagged, operationId: 'getMetrics', summary: 'Prometheus metrics', response: { 200: text('text/plain', 'The Prometheus text exposition') } };
  app.get('/metrics', { schema: metricsSchema }, async (_req, reply) => {
    const body = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(body);
  });
}
