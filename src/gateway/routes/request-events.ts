/**
 * The request's Server-Sent Events stream (contract §4, §9): queued, progress, then one
 * terminal event — a stream a client can leave and resume where it left off.
 *
 *   auth: the API key, or the signed `expires` + `sig` of events_url (403 invalid_link /
 *         link_expired) ─▶ the row (404) ─▶ 200 text/event-stream:
 *     subscribe to live steps ─▶ replay the logged steps after Last-Event-ID ─▶ live steps
 *     and queue positions, each sent once, in id order ─▶ the terminal event ─▶ end
 *
 * Every event's `id:` is its place in the request's order (queue/events.ts `eventIds`):
 * the same on every gateway of a fleet and across a requeue, so a client that reconnects
 * with `Last-Event-ID: n` (the header; EventSource sends it on its own reconnects) gets the
 * logged steps after n, then the live ones — no gap, no repeat — and always the terminal
 * event, even if it saw it before. The `last_event_id` query parameter does the same for a
 * client that cannot set the header: a page that opens a new EventSource (after a reload, or
 * on a fresh events_url once the old link expired) — the header wins when both are sent,
 * since EventSource's own reconnects keep the URL and send the header.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import sharp from 'sharp';
import { getRequest, type RequestRow } from '../../store/requests.js';
import { TERMINAL } from '../../contract/request-states.js';
import { EVENT_LOG_MAX, EVENT_LOG_TTL_MS, eventIds, type ProgressEvent } from '../../queue/events.js';
import { authHook } from '../auth.js';
import type { App, AppDeps } from '../app.js';
import { signedRecordView } from '../../store/record-view.js';
import { eventsPath } from '../../storage/request-links.js';
import { baseUrl } from '../base-url.js';
import { keyOrLink } from '../request-access.js';
import { errorResponses, RequestIdParams, SECURED } from '../route-schema.js';

const eventsSchema = {
  tags: ['requests'],
  // The key, or none at all with `expires` and `sig` (an OpenAPI `{}`: anonymous allowed).
  security: [...SECURED, {}],
  operationId: 'streamRequestEvents',
  summary: 'Server-Sent Events: queued, progress (optional preview), then completed, failed or cancelled',
  description:
    'With the API key, or without one through the signed `events_url` of the submit answer and the record (`expires` and `sig`, valid for a ' +
    "short time, so that a browser's EventSource, which cannot send headers, can follow it; a stream that started keeps going past the expiry). " +
    'A tampered or moved link is a 403 invalid_link, an expired one a 403 link_expired (GET /v2/requests/{id} hands out a fresh one).\n\n' +
    "Each event's `id:` is its place in the request's order, the same on every server and across a retry after a crash: run n (1 for the " +
    'first) owns the ids n·1000000 to n·1000000+999999 — `queued` at position p is n·1000000+900000−p (a snapshot: the same position has the ' +
    'same id), step s is n·1000000+900000+s — and the terminal event is (attempts+2)·1000000, above every other. The numbers are an order, not a count.\n\n' +
    'Resuming: send `Last-Event-ID: <the last id received>` (EventSource does on its own reconnects), or `last_event_id` in the query when a ' +
    'header cannot be set (the header wins). The stream then replays the steps after it (without previews: steps are logged, pictures are not), ' +
    'then goes on live, each event once, and always ends with the terminal event, even one the client saw (`Last-Event-ID: 0` replays every ' +
    'logged step). A stream without either starts now: the queue position, then live steps (a finished request: its terminal event alone). ' +
    `The log keeps the newest ${EVENT_LOG_MAX} steps of a request for ${EVENT_LOG_TTL_MS / 60_000} minutes after its last one.`,
  params: RequestIdParams,
  querystring: Type.Object({
    preview: Type.Optional(Type.Boolean({ description: 'live progress events carry a low-resolution PNG preview (replayed ones do not)' })),
    last_event_id: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'Resume after this event id, for a client that cannot send the Last-Event-ID header' })),
    expires: Type.Optional(Type.String({ description: 'Signed link (events_url): when it expires (Unix seconds); with sig, replaces the API key' })),
    sig: Type.Optional(Type.String({ description: "Signed link (events_url): HMAC-SHA256 of the path and expires under the server's link secret (base64url)" })),
  }),
  headers: Type.Object({
    'last-event-id': Type.Optional(Type.String({ description: 'Resume after this event id (the SSE reconnection header); an id that is not a number is ignored' })),
  }),
  response: {
    200: {
      description:
        'text/event-stream: each event has an id: (its place in the request, see above), an event: name and JSON data: — queued (QueuedEvent), progress (ProgressEvent), then exactly one of completed, failed or cancelled (TerminalEvent); then the stream ends',
      content: { 'text/event-stream': { schema: Type.String() } },
    },
    ...errorResponses(400, 401, 403, 404, 500),
  },
};

export function registerRequestEventRoutes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const access = keyOrLink(auth, deps.links, eventsPath);

  app.get('/v2/requests/:id/events', { schema: eventsSchema, onRequest: access.hook }, async (req, reply) => {
    const row = await access.row(deps, req, req.params.id);
    const after = lastEventId(req.headers['last-event-id']) ?? lastEventId(req.query.last_event_id);
    await streamEvents(deps, req, reply, row, { withPreview: req.query.preview === true, after });
  });
}

/** An event id as sent back; anything else (a browser's stale value, garbage) resumes nothing. */
function lastEventId(v: unknown): number | null {
  return typeof v === 'string' && /^\d{1,15}$/.test(v.trim()) ? Number(v.trim()) : null;
}

/**
 * SSE: `queued` (position, again whenever it moves up), one `progress` per step (with a
 * base64 PNG preview when asked, live steps only), then exactly one terminal event —
 * `completed`, `failed` or `cancelled` — carrying the request record; then the stream ends.
 * Resumed (`after`: the last id the client has), the logged steps after it are replayed
 * first; nothing at or below it is sent, but the terminal event always is. A fresh stream
 * (no `after`) starts now: the position, then live steps, as a new follower wants.
 */
async function streamEvents(
  deps: AppDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  row: RequestRow,
  opts: { withPreview: boolean; after: number | null },
): Promise<void> {
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
  // The highest id the client has: what it said it saw, then each one sent. Ids only go up
  // on the wire, so a step both replayed and heard live, or a stale position, is sent once.
  let sent = opts.after ?? 0;
  const send = (id: number, event: string, data: unknown, always = false) => {
    if (closed || (!always && id <= sent)) return;
    sent = Math.max(sent, id);
    res.write(`id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  // The run a queued event waits for: the row's next (a running row queued again has been
  // requeued), or the one after the last step seen.
  let queuedRun = row.attempts + 1;
  const step = async (ev: ProgressEvent, live: boolean) => {
    const run = ev.attempt ?? row.attempts;
    queuedRun = Math.max(queuedRun, run + 1);
    const id = eventIds.progress(run, ev.step);
    if (id <= sent) return;
    const pv = live && opts.withPreview ? ev.preview : undefined;
    if (!pv) return send(id, 'progress', { step: ev.step, total: ev.total });
    const png = await sharp(pv.data, { raw: { width: pv.width, height: pv.height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
    send(id, 'progress', { step: ev.step, total: ev.total, preview: { width: pv.width, height: pv.height, png_base64: png.toString('base64') } });
  };
  const base = baseUrl(deps, req);
  const terminal = async (reason: string | null) => {
    const fresh = (await getRequest(deps.db, row.id)) ?? row;
    const name = fresh.status === 'COMPLETED' ? 'completed' : fresh.status === 'FAILED' ? 'failed' : 'cancelled';
    // The record as GET /v2/requests/{id} gives it: its output and events_url signed.
    const record = await signedRecordView(fresh, base, deps.links);
    send(eventIds.terminal(fresh.attempts), name, { ...record, ...(reason ? { reason } : {}) }, true);
    closed = true;
    res.end();
  };

  // Subscribe first, then read the log, then look at the state, so no step falls between
  // them. Everything goes out through one promise chain, in order: the replay, then live
  // steps (a preview being encoded never reorders them) and queue positions.
  let chain: Promise<void> = Promise.resolve();
  const enqueue = (fn: () => Promise<void> | void) => {
    chain = chain.then(fn).catch((err: unknown) => req.log.warn({ err, request_id: row.id }, 'an event was not sent'));
  };
  const unsubscribe = deps.queue.onProgress(row.id, (ev: ProgressEvent) => enqueue(() => step(ev, true)));
  if (opts.after !== null) {
    enqueue(async () => {
      for (const s of await deps.queue.progressLog(row.id)) await step({ step: s.step, total: s.total, attempt: s.attempt }, false);
    });
  }
  const done = deps.queue.waitFor(row.id);
  const keepAlive = setInterval(() => !closed && res.write(': keep-alive\n\n'), 15_000);
  const reportPosition = async () => {
    const pos = await deps.queue.position(row.id).catch(() => 0);
    if (pos > 0) enqueue(() => send(eventIds.queued(queuedRun, pos), 'queued', { request_id: row.id, position: pos }));
  };
  const positions = setInterval(() => void reportPosition(), 500);
  const cleanup = () => {
    closed = true;
    unsubscribe();
    clearInterval(keepAlive);
    clearInterval(positions);
  };
  res.on('close', cleanup);
  try {
    const now = await getRequest(deps.db, row.id);
    if (!now || TERMINAL.has(now.status)) {
      await chain;
      await terminal(null);
      return;
    }
    await reportPosition();
    const outcome = await done;
    await chain;
    await terminal(outcome.status === 'CANCELLED' ? outcome.reason : null);
  } finally {
    cleanup();
  }
}
