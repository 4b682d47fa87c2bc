/**
 * GET /health always answers 200 with the state in the body (cog style): STARTING,
 * READY, BUSY or UNHEALTHY with the reason, for the server (its least ready model) and for
 * each served model (contract §6), plus what the queue describes (the engines on the
 * embedded default, the fleet of workers when scaled out). GET /health/ready answers 503
 * unless work can be taken, for load balancers (`?model=` asks about one model). GET
 * /metrics is the Prometheus exposition (the queue gauges carry a `model` label).
 */
import Type from 'typebox';
import type { AppDeps, App } from '../app.js';
import type { Readiness } from '../../queue/types.js';
import type { QueueDepth } from '../../metrics/metrics.js';
import { ApiError } from '../../contract/errors.js';
import { Health, ReadyCheck } from '../../contract/health-schema.js';
import { errorResponses, json, ref, text } from '../route-schema.js';

/** The state of one served model's engines (or the fleet's workers for it). */
export function healthOf(deps: AppDeps, model: string): Readiness {
  if (deps.draining?.()) return { status: 'DRAINING', reason: 'the server is shutting down' };
  return deps.queue.readiness(model);
}

/** Of several states, the one that says most about what is wrong (a server is as ready as its least ready model). */
const SEVERITY: Readonly<Record<string, number>> = { READY: 0, BUSY: 1, STARTING: 2, UNHEALTHY: 3, DRAINING: 4 };

/** The whole server's state: its least ready model's, with that model named in the reason when several are served. */
export function serverHealth(deps: AppDeps): Readiness {
  const [first, ...rest] = deps.config.models.slugs.map((slug) => ({ slug, h: healthOf(deps, slug) }));
  let worst = first!;
  for (const m of rest) if ((SEVERITY[m.h.status] ?? 0) > (SEVERITY[worst.h.status] ?? 0)) worst = m;
  if (worst.h.reason && rest.length > 0 && worst.h.status !== 'DRAINING') return { ...worst.h, reason: `${worst.slug}: ${worst.h.reason}` };
  return worst.h;
}

function queueView(d: QueueDepth | undefined) {
  return { waiting: d?.waiting ?? 0, running: d?.running ?? 0, oldest_age_s: Number((d?.oldestAgeS ?? 0).toFixed(3)) };
}

const tagged = { tags: ['health'] };

export function registerHealthRoutes(app: App, deps: AppDeps): void {
  const healthSchema = { ...tagged, operationId: 'getHealth', summary: 'State: STARTING, READY, BUSY, UNHEALTHY (with the reason), of the server and of each model', response: { 200: json(ref(Health), 'Health') } };
  app.get('/health', { schema: healthSchema }, async () => {
    const h = serverHealth(deps);
    const [details, depths] = await Promise.all([deps.queue.describe(), deps.queue.depth()]);
    const perModel = (details.models ?? {}) as Record<string, Record<string, unknown>>;
    const fleet = details.workers as { list?: Array<{ model: string; state: string }> } | null | undefined;
    const models = Object.fromEntries(
      deps.config.models.list.map((m) => {
        const mh = healthOf(deps, m.slug);
        const live = fleet?.list?.filter((w) => w.model === m.slug && ['READY', 'BUSY', 'STARTING'].includes(w.state)).length;
        return [
          m.slug,
          {
            status: mh.status,
            ...(mh.reason ? { reason: mh.reason } : mh.noWorkers ? { reason: 'no live worker: synchronous calls answer 503, asynchronous ones wait in the queue' } : {}),
            source: m.source,
            variant: m.variant,
            defaults: { ...m.defaults },
            ...(live !== undefined ? { workers: live } : {}),
            queue: queueView(depths.get(m.slug)),
            ...perModel[m.slug],
          },
        ];
      }),
    );
    const total = [...depths.values()].reduce(
      (t, d) => ({ waiting: t.waiting + d.waiting, running: t.running + d.running, oldestAgeS: Math.max(t.oldestAgeS, d.oldestAgeS) }),
      { waiting: 0, running: 0, oldestAgeS: 0 },
    );
    const { models: _described, ...rest } = details;
    return {
      status: h.status,
      ...(h.reason ? { reason: h.reason } : {}),
      model: deps.config.models.first.source,
      models,
      ...rest,
      queue: queueView(total),
    };
  });

  const readySchema = {
    ...tagged,
    operationId: 'getReadiness',
    summary: '200 when work can be taken (by every model, or by ?model=), else 503',
    querystring: Type.Object({ model: Type.Optional(Type.String({ maxLength: 64, description: 'A served slug: its own readiness' })) }),
    response: { 200: json(ref(ReadyCheck), 'Ready'), 503: json(ref(ReadyCheck), 'Not ready'), ...errorResponses(400, 404) },
  };
  app.get('/health/ready', { schema: readySchema }, async (req, reply) => {
    const slug = req.query.model;
    if (slug !== undefined && !deps.config.models.get(slug)) throw unknownModel(deps, slug);
    const h = slug === undefined ? serverHealth(deps) : healthOf(deps, slug);
    const ok = (h.status === 'READY' || h.status === 'BUSY') && !(slug !== undefined && h.noWorkers);
    return reply.status(ok ? 200 : 503).send({ status: h.status, ...(h.reason ? { reason: h.reason } : {}) });
  });

  const metricsSchema = { ...tagged, operationId: 'getMetrics', summary: 'Prometheus metrics', response: { 200: text('text/plain', 'The Prometheus text exposition') } };
  app.get('/metrics', { schema: metricsSchema }, async (_req, reply) => {
    const body = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(body);
  });
}

/** 404 for a slug this server does not serve, naming those it does (contract §6). */
export function unknownModel(deps: Pick<AppDeps, 'config'>, slug: string): ApiError {
  return new ApiError('not_found', `Unknown model ${JSON.stringify(slug.slice(0, 64))}: this server serves ${deps.config.models.slugs.join(', ')}`, {
    details: [{ field: 'model', message: `must be one of ${deps.config.models.slugs.join(', ')}` }],
  });
}
