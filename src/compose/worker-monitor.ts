/**
 * A fleet worker process's own HTTP monitor (KLEIN_WORKER_METRICS_PORT): what only the
 * worker sees, for Prometheus and probes. The same health states and error envelope as the
 * gateway's (gateway/routes/health.ts):
 *
 *   GET /health        200 always, the state in the body (cog style): READY when one of its
 *                      engines can take a job, else BUSY, STARTING, DRAINING or UNHEALTHY
 *                      (with the engines' reasons), and each worker's own state;
 *   GET /health/ready  503 unless READY or BUSY, for probes;
 *   GET /metrics       stage timings, jobs finished, engine restarts.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { ApiError, errorBody } from '../contract/errors.js';
import type { Metrics } from '../metrics/metrics.js';
import type { WorkerState } from '../queue/redis/fleet.js';

export interface MonitoredWorker {
  id: string;
  state: WorkerState;
  /** Why it is UNHEALTHY, when it is. */
  reason: string | null;
}

/** One state for the process: the most useful of its workers' states. */
export function processState(workers: readonly MonitoredWorker[]): { status: WorkerState; reason?: string } {
  const states = new Set(workers.map((w) => w.state));
  for (const s of ['READY', 'BUSY', 'STARTING'] as const) if (states.has(s)) return { status: s };
  if (workers.length > 0 && states.size === 1 && states.has('DRAINING')) return { status: 'DRAINING', reason: 'the worker is shutting down' };
  const reasons = workers.filter((w) => w.reason).map((w) => `${w.id}: ${w.reason}`);
  return { status: 'UNHEALTHY', reason: reasons.join('; ') || 'no engine can take work' };
}

export function buildWorkerMonitor(metrics: Metrics, workers: () => MonitoredWorker[]): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get('/health', async () => {
    const list = workers();
    return { ...processState(list), workers: list.map((w) => ({ id: w.id, state: w.state, ...(w.reason ? { reason: w.reason } : {}) })) };
  });
  app.get('/health/ready', async (_req, reply) => {
    const h = processState(workers());
    return reply.status(h.status === 'READY' || h.status === 'BUSY' ? 200 : 503).send(h);
  });
  app.get('/metrics', async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send(errorBody(new ApiError('not_found', `No route ${req.method} ${req.url.split('?')[0]}`), req.id)),
  );
  app.setErrorHandler((err, req, reply) => {
    const apiErr = err instanceof ApiError ? err : new ApiError('internal', 'The monitor failed to answer');
    return reply.status(apiErr.status).send(errorBody(apiErr, req.id));
  });
  return app;
}
