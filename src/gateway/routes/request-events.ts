/**
 * The request's Server-Sent Events stream (contract §4, §9): queued, progress, then one
 * terminal event.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import sharp from 'sharp';
import { getRequestForAccount, type RequestRow } from '../../store/requests.js';
import { TERMINAL } from '../../contract/request-states.js';
import type { JobOutcome, ProgressEvent } from '../../queue/events.js';
import { authHook } from '../auth.js';
import type { App, AppDeps } from '../app.js';
import { recordView } from '../../store/record-view.js';
import { baseUrl } from '../base-url.js';
import { ownRow } from '../own-row.js';
import { errorResponses, RequestIdParams, SECURED } from '../route-schema.js';

const tagged = { tags: ['requests'], security: SECURED };

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

export function registerRequestEventRoutes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });

  app.get('/v2/requests/:id/events', { schema: eventsSchema, onRequest: auth }, async (req, reply) => {
    const row = await ownRow(deps, req, req.params.id);
    await streamEvents(deps, req, reply, row, req.query.preview === true);
  });
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

