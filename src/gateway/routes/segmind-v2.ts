/**
 * The asynchronous API (contract §4): submit, status, record, output, cancel and a
 * Server-Sent Events stream. A request is visible only to its own account (404 otherwise),
 * and an expired request is a 404.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import sharp from 'sharp';
import { balance } from '../../accounts/ledger.js';
import { getRequestForAccount, type RequestRow } from '../../store/requests.js';
import { TERMINAL } from '../../contract/request-states.js';
import type { JobOutcome, ProgressEvent } from '../../queue/events.js';
import { CONTENT_TYPES } from '../../queue/storage-keys.js';
import type { ImageFormat } from '../../contract/types.js';
import { authHook, requireCaller } from '../auth.js';
import type { App, AppDeps } from '../app.js';
import { ApiError } from '../../contract/errors.js';
import { AsyncBody } from '../../contract/request-schema.js';
import { Cancellation, RequestRecord, StatusView, Submitted, type RequestMetrics } from '../../contract/responses.js';
import { admit } from '../generate.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import { admissionHook } from '../admission-hook.js';
import { metricsOf, recordView, urlsFor } from '../../store/record-view.js';
import { baseUrl } from '../base-url.js';
import { errorResponses, IdempotencyHeaders, IMAGE_CONTENT, json, ModelParams, RATE_LIMITED_HEADERS, ref, RequestIdParams, SECURED } from '../route-schema.js';

async function ownRow(deps: AppDeps, req: FastifyRequest, id: string): Promise<RequestRow> {
  const caller = requireCaller(req);
  const row = await getRequestForAccount(deps.db, id, caller.accountId);
  if (!row || Number(row.expires_at) <= Date.now()) throw new ApiError('not_found', `No request ${id}`);
  return row;
}

const tagged = { tags: ['requests'], security: SECURED };

const submitSchema = {
  ...tagged,
  operationId: 'submitRequest',
  summary: 'Queue a generation (asynchronous)',
  description: 'Answers at once with the request id and its links; webhook_url gets one signed terminal event.',
  params: ModelParams,
  headers: IdempotencyHeaders,
  body: ref(AsyncBody),
  response: { 200: json(ref(Submitted), 'Queued', RATE_LIMITED_HEADERS), ...errorResponses(400, 401, 404, 406, 408, 413, 422, 429, 500, 502, 503) },
};

const statusSchema = {
  ...tagged,
  operationId: 'getRequestStatus',
  summary: 'Status, queue position and progress',
  params: RequestIdParams,
  response: { 200: json(ref(StatusView), 'Status'), ...errorResponses(401, 404, 500) },
};

const recordSchema = {
  ...tagged,
  operationId: 'getRequest',
  summary: 'The request record (input, status, error, metrics, output)',
  params: RequestIdParams,
  querystring: Type.Object({ base64: Type.Optional(Type.Boolean({ description: 'output as the image base64-encoded instead of a link' })) }),
  response: { 200: json(ref(RequestRecord), 'Record'), ...errorResponses(400, 401, 404, 500) },
};

const outputSchema = {
  ...tagged,
  operationId: 'getRequestOutput',
  summary: 'The output image',
  params: RequestIdParams,
  response: {
    200: { description: 'The image', headers: { 'x-seed-value': Type.Integer({ description: 'The seed used' }) }, content: IMAGE_CONTENT },
    ...errorResponses(401, 404, 500),
  },
};

const cancelSchema = {
  ...tagged,
  operationId: 'cancelRequest',
  summary: 'Cancel a queued or running request (not charged)',
  params: RequestIdParams,
  response: { 200: json(ref(Cancellation), 'Cancelled or already finished', RATE_LIMITED_HEADERS), ...errorResponses(401, 404, 413, 429, 500) },
};

const eventsSchema = {
  ...tagged,
  operationId: 'streamRequestEvents',
  summary: 'Server-Sent Events: queued, progress (optional preview), then completed, failed or cancelled',
  params: RequestIdParams,
  querystring: Type.Object({ preview: Type.Optional(Type.Boolean({ description: 'progress events carry a low-resolution PNG preview' })) }),
  response: {
    200: {
      description:
        'text/event-stream: each event has an id: (its sequence number), an event: name and JSON data: — queued (QueuedEvent), progress (ProgressEvent), then exactly one of completed, failed or cancelled (TerminalEvent); then the stream ends',
      content: { 'text/event-stream': { schema: Type.String() } },
    },
    ...errorResponses(400, 401, 404, 500),
  },
};

export function registerSegmindV2Routes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const rate = rateLimitHook(deps.limiter);
  const admission = admissionHook(deps, { route: 'v2' });

  app.post('/v2/:model', { schema: submitSchema, onRequest: [auth, rate, admission], bodyLimit: deps.config.bodyLimitBytes }, async (req, reply) => {
    const caller = requireCaller(req);
    // A client that leaves before its request is queued never learns its id: nothing is queued for it.
    const a = await admit(deps, req, caller, req.body, { route: 'v2', idempotencyKey: req.headers['idempotency-key'], signal: req.clientGone });
    const id = a.kind === 'new' ? a.id : a.row.id;
    if (a.kind === 'existing') reply.header('idempotent-replayed', 'true');
    reply.header('x-request-id', id);
    const status = a.kind === 'new' ? 'QUEUED' : a.row.status;
    return { request_id: id, status, ...urlsFor(baseUrl(deps, req), id) };
  });

  app.get('/v2/requests/:id/status', { schema: statusSchema, onRequest: auth }, async (req) => {
    const row = await ownRow(deps, req, req.params.id);
    const p = row.status === 'PROCESSING' ? await deps.queue.lastProgress(row.id) : null;
    return {
      request_id: row.id,
      status: row.status,
      queue_position: row.status === 'QUEUED' ? await deps.queue.position(row.id) : 0,
      progress: row.status === 'COMPLETED' ? { step: stepsOf(row), total: stepsOf(row) } : p ? { step: p.step, total: p.total } : null,
      // store/record-view.ts writes every key of RequestMetrics (its type says only Record);
      // the response schema's serializer refuses an answer without them.
      metrics: metricsOf(row) as RequestMetrics,
    };
  });

  app.get('/v2/requests/:id', { schema: recordSchema, onRequest: auth }, async (req) => {
    const row = await ownRow(deps, req, req.params.id);
    let output: string | null = null;
    if (row.status === 'COMPLETED' && row.output_key) {
      if (req.query.base64 === true) {
        const bytes = await deps.storage.get(row.output_key);
        if (!bytes) throw new ApiError('not_found', `The output of ${row.id} has expired`);
        output = bytes.toString('base64');
      } else {
        output = (await deps.storage.directUrl(row.output_key, 3600)) ?? urlsFor(baseUrl(deps, req), row.id).output_url;
      }
    }
    // As metrics above: the record view's type is the store's, its shape this schema's.
    return recordView(row, baseUrl(deps, req), { output, remainingMicro: await balance(deps.db, row.account_id) }) as RequestRecord;
  });

  app.get('/v2/requests/:id/output', { schema: outputSchema, onRequest: auth }, async (req, reply) => {
    const row = await ownRow(deps, req, req.params.id);
    if (row.status !== 'COMPLETED' || !row.output_key) {
      throw new ApiError('not_found', `Request ${row.id} has no output (status ${row.status})`);
    }
    const bytes = await deps.storage.get(row.output_key);
    if (!bytes) throw new ApiError('not_found', `The output of ${row.id} has expired`);
    reply.header('x-seed-value', String(row.seed));
    return reply.type(CONTENT_TYPES[(row.output_format ?? 'png') as ImageFormat]).send(bytes);
  });

  app.post('/v2/requests/:id/cancel', { schema: cancelSchema, onRequest: [auth, rate] }, async (req) => {
    const row = await ownRow(deps, req, req.params.id);
    const cancelled = TERMINAL.has(row.status) ? false : await deps.queue.cancel(row.id, 'user');
    if (cancelled && row.status === 'PROCESSING') await deps.queue.waitFor(row.id);
    const after = (await getRequestForAccount(deps.db, row.id, row.account_id)) ?? row;
    return { request_id: row.id, status: after.status, cancelled };
  });

  app.get('/v2/requests/:id/events', { schema: eventsSchema, onRequest: auth }, async (req, reply) => {
    const row = await ownRow(deps, req, req.params.id);
    await streamEvents(deps, req, reply, row, req.query.preview === true);
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

