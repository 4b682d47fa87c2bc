/**
 * The asynchronous API (contract §4): submit, status, record, output, cancel and a
 * Server-Sent Events stream. A request is visible only to its own account (404 otherwise),
 * and an expired request is a 404.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import sharp from 'sharp';
import { balance } from '../../accounts/ledger.js';
import { getRequestForAccount, type RequestRow } from '../../store/requests.js';
import { TERMINAL } from '../../contract/request-states.js';
import type { JobOutcome, ProgressEvent } from '../../queue/events.js';
import { CONTENT_TYPES } from '../../queue/storage-keys.js';
import type { ImageFormat } from '../../contract/types.js';
import { authHook, requireCaller } from '../auth.js';
import type { AppDeps } from '../app.js';
import { ApiError } from '../../contract/errors.js';
import { admit } from '../generate.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import { admissionHook } from '../admission-hook.js';
import { metricsOf, recordView, urlsFor } from '../../store/record-view.js';
import { MODEL_SLUG } from '../../contract/models.js';
import { baseUrl } from '../base-url.js';

type IdParams = { Params: { id: string } };

async function ownRow(deps: AppDeps, req: FastifyRequest<IdParams>): Promise<RequestRow> {
  const caller = requireCaller(req);
  const row = await getRequestForAccount(deps.db, req.params.id, caller.accountId);
  if (!row || Number(row.expires_at) <= Date.now()) throw new ApiError('not_found', `No request ${req.params.id}`);
  return row;
}

export function registerSegmindV2Routes(app: FastifyInstance, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const rate = rateLimitHook(deps.limiter);
  const admission = admissionHook(deps, { route: 'v2' });

  app.post<{ Params: { model: string } }>('/v2/:model', { onRequest: [auth, rate, admission], bodyLimit: deps.config.bodyLimitBytes }, async (req, reply) => {
    if (req.params.model !== MODEL_SLUG) throw new ApiError('not_found', `Unknown model "${req.params.model}": this server serves ${MODEL_SLUG}`);
    const caller = requireCaller(req);
    const idem = req.headers['idempotency-key'];
    // A client that leaves before its request is queued never learns its id: nothing is queued for it.
    const a = await admit(deps, req, caller, req.body, { route: 'v2', idempotencyKey: typeof idem === 'string' ? idem : undefined, signal: req.clientGone });
    const id = a.kind === 'new' ? a.id : a.row.id;
    if (a.kind === 'existing') reply.header('idempotent-replayed', 'true');
    reply.header('x-request-id', id);
    const status = a.kind === 'new' ? 'QUEUED' : a.row.status;
    return { request_id: id, status, ...urlsFor(baseUrl(deps, req), id) };
  });

  app.get<IdParams>('/v2/requests/:id/status', { onRequest: auth }, async (req) => {
    const row = await ownRow(deps, req);
    const p = row.status === 'PROCESSING' ? await deps.queue.lastProgress(row.id) : null;
    return {
      request_id: row.id,
      status: row.status,
      queue_position: row.status === 'QUEUED' ? await deps.queue.position(row.id) : 0,
      progress: row.status === 'COMPLETED' ? { step: stepsOf(row), total: stepsOf(row) } : p ? { step: p.step, total: p.total } : null,
      metrics: metricsOf(row),
    };
  });

  app.get<IdParams & { Querystring: { base64?: string } }>('/v2/requests/:id', { onRequest: auth }, async (req) => {
    const row = await ownRow(deps, req);
    let output: string | null = null;
    if (row.status === 'COMPLETED' && row.output_key) {
      if (req.query.base64 === 'true' || req.query.base64 === '1') {
        const bytes = await deps.storage.get(row.output_key);
        if (!bytes) throw new ApiError('not_found', `The output of ${row.id} has expired`);
        output = bytes.toString('base64');
      } else {
        output = (await deps.storage.directUrl(row.output_key, 3600)) ?? urlsFor(baseUrl(deps, req), row.id).output_url;
      }
    }
    return recordView(row, baseUrl(deps, req), { output, remainingMicro: await balance(deps.db, row.account_id) });
  });

  app.get<IdParams>('/v2/requests/:id/output', { onRequest: auth }, async (req, reply) => {
    const row = await ownRow(deps, req);
    if (row.status !== 'COMPLETED' || !row.output_key) {
      throw new ApiError('not_found', `Request ${row.id} has no output (status ${row.status})`);
    }
    const bytes = await deps.storage.get(row.output_key);
    if (!bytes) throw new ApiError('not_found', `The output of ${row.id} has expired`);
    reply.header('x-seed-value', String(row.seed));
    return reply.type(CONTENT_TYPES[(row.output_format ?? 'png') as ImageFormat]).send(bytes);
  });

  app.post<IdParams>('/v2/requests/:id/cancel', { onRequest: [auth, rate] }, async (req) => {
    const row = await ownRow(deps, req);
    const cancelled = TERMINAL.has(row.status) ? false : await deps.queue.cancel(row.id, 'user');
    if (cancelled && row.status === 'PROCESSING') await deps.queue.waitFor(row.id);
    const after = (await getRequestForAccount(deps.db, row.id, row.account_id)) ?? row;
    return { request_id: row.id, status: after.status, cancelled };
  });

  app.get<IdParams & { Querystring: { preview?: string } }>('/v2/requests/:id/events', { onRequest: auth }, async (req, reply) => {
    const row = await ownRow(deps, req);
    await streamEvents(deps, req, reply, row, req.query.preview === 'true' || req.query.preview === '1');
  });
}

function stepsOf(row: RequestRow): number {
  return Number((JSON.parse(row.params) as { steps?: number }).steps ?? 0);
}

/**
 * SSE: `queued` (position, again whenever it changes), one `progress` per step (with a
 * base64 PNG preview when asked), then exactly one terminal event — `completed`, `failed`
 * or `cancelled` — carrying the request record; then the stream ends.
 */
async function streamEvents(deps: AppDeps, req: FastifyRequest, reply: FastifyReply, row: RequestRow, withPreview: boolean): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-request-id': req.id,
    'x-accel-buffering': 'no',
  });
  let closed = false;
  let seq = 0;
  const send = (event: string, data: unknown) => {
    if (!closed) res.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const base = baseUrl(deps, req);
  const terminal = async (outcome: JobOutcome | null) => {
    const fresh = (await getRequestForAccount(deps.db, row.id, row.account_id)) ?? row;
    const name = fresh.status === 'COMPLETED' ? 'completed' : fresh.status === 'FAILED' ? 'failed' : 'cancelled';
    send(name, { ...recordView(fresh, base), ...(outcome?.status === 'CANCELLED' ? { reason: outcome.reason } : {}) });
    closed = true;
    res.end();
  };

  // Subscribe first, then look at the state, so no event falls between the two. Events go
  // out through one promise chain, so a preview being encoded never reorders the steps.
  let chain: Promise<void> = Promise.resolve();
  const unsubscribe = deps.queue.onProgress(row.id, (ev: ProgressEvent) => {
    chain = chain.then(async () => {
      const pv = withPreview ? ev.preview : undefined;
      if (!pv) return send('progress', { step: ev.step, total: ev.total });
      const png = await sharp(pv.data, { raw: { width: pv.width, height: pv.height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
      send('progress', { step: ev.step, total: ev.total, preview: { width: pv.width, height: pv.height, png_base64: png.toString('base64') } });
    });
  });
  const done = deps.queue.waitFor(row.id);
  const keepAlive = setInterval(() => !closed && res.write(': keep-alive\n\n'), 15_000);
  let lastPos = -1;
  const positions = setInterval(() => void reportPosition(), 500);
  const reportPosition = async () => {
    const pos = await deps.queue.position(row.id).catch(() => 0);
    if (pos > 0 && pos !== lastPos) {
      lastPos = pos;
      send('queued', { request_id: row.id, position: pos });
    }
  };
  const cleanup = () => {
    closed = true;
    unsubscribe();
    clearInterval(keepAlive);
    clearInterval(positions);
  };
  res.on('close', cleanup);
  try {
    const now = await getRequestForAccount(deps.db, row.id, row.account_id);
    if (!now || TERMINAL.has(now.status)) {
      await terminal(null);
      return;
    }
    await reportPosition();
    const outcome = await done;
    await chain;
    await terminal(outcome);
  } finally {
    cleanup();
  }
}

export { metricsOf };
