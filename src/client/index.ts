/**
 * A typed client for klein-serve: the synchronous Segmind-compatible call, the async API
 * (submit, status, record, output, cancel, events), idempotency keys and typed errors.
 * Uses the platform's fetch; the CLI and the tests use it.
 *
 * Its types are the server's own schemas (contract/), read through `Static`: what a body
 * may hold and what an answer holds cannot differ between the two. Type-only imports: the
 * client needs nothing of the server at run time.
 */
import type { ErrorEnvelope, QueuedEvent, ProgressEvent, RequestRecord, StatusView, Submitted, TerminalEvent, Cancellation, Credits } from '../contract/responses.js';
import type { GenerateBody, GenerateInput } from '../contract/request-schema.js';
import type { RequestStatus } from '../contract/request-states.js';

export type { GenerateBody, GenerateInput, RequestStatus, RequestRecord, StatusView, Submitted };

export interface GeneratedImage {
  bytes: Buffer;
  contentType: string;
  requestId: string;
  seed: number;
  generationTime: number;
  cost: number;
  remainingCredits: number;
}

/** An event of GET /v2/requests/{id}/events, parsed: its name, its id (what Last-Event-ID resumes after) and its data. */
export type KleinEvent = { id: string | null } & (
  | { event: 'queued'; data: QueuedEvent }
  | { event: 'progress'; data: ProgressEvent }
  | { event: 'completed' | 'failed' | 'cancelled'; data: TerminalEvent }
);

/** Any answer that is not a success: the server's status, code, message and field details. */
export class KleinApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null,
    readonly details: Array<{ field: string; message: string }> = [],
    readonly retryAfterS: number | null = null,
  ) {
    super(message);
    this.name = 'KleinApiError';
  }
}

export interface ClientOptions {
  baseUrl: string;
  apiKey: string;
  fetch?: typeof fetch;
}

export class KleinClient {
  private readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly fetch: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/$/, '');
    this.apiKey = options.apiKey;
    this.fetch = options.fetch ?? fetch;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { 'x-api-key': this.apiKey, ...extra };
  }

  private async call(path: string, init: RequestInit = {}): Promise<Response> {
    const r = await this.fetch(`${this.baseUrl}${path}`, init);
    if (!r.ok) throw await toError(r);
    return r;
  }

  /** The synchronous call (POST /v1/flux-2-klein-4b): the image and its headers. */
  async generate(body: GenerateBody, opts: { idempotencyKey?: string; signal?: AbortSignal } = {}): Promise<GeneratedImage> {
    const r = await this.call('/v1/flux-2-klein-4b', {
      method: 'POST',
      headers: this.headers({ 'content-type': 'application/json', ...(opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {}) }),
      body: JSON.stringify(body),
      signal: opts.signal,
    });
    return {
      bytes: Buffer.from(await r.arrayBuffer()),
      contentType: r.headers.get('content-type') ?? '',
      requestId: r.headers.get('x-request-id') ?? '',
      seed: Number(r.headers.get('x-seed-value')),
      generationTime: Number(r.headers.get('x-generation-time')),
      cost: Number(r.headers.get('x-cost')),
      remainingCredits: Number(r.headers.get('x-remaining-credits')),
    };
  }

  /** Queues a generation (POST /v2/flux-2-klein-4b); `webhook_url` gets its terminal event. */
  async submit(body: GenerateInput, opts: { idempotencyKey?: string } = {}): Promise<Submitted> {
    const r = await this.call('/v2/flux-2-klein-4b', {
      method: 'POST',
      headers: this.headers({ 'content-type': 'application/json', ...(opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {}) }),
      body: JSON.stringify(body),
    });
    return (await r.json()) as Submitted;
  }

  async status(id: string): Promise<StatusView> {
    return (await (await this.call(`/v2/requests/${encodeURIComponent(id)}/status`, { headers: this.headers() })).json()) as StatusView;
  }

  async get(id: string): Promise<RequestRecord> {
    return (await (await this.call(`/v2/requests/${encodeURIComponent(id)}`, { headers: this.headers() })).json()) as RequestRecord;
  }

  async output(id: string): Promise<{ bytes: Buffer; contentType: string }> {
    const r = await this.call(`/v2/requests/${encodeURIComponent(id)}/output`, { headers: this.headers() });
    return { bytes: Buffer.from(await r.arrayBuffer()), contentType: r.headers.get('content-type') ?? '' };
  }

  async cancel(id: string): Promise<Cancellation> {
    const r = await this.call(`/v2/requests/${encodeURIComponent(id)}/cancel`, { method: 'POST', headers: this.headers() });
    return (await r.json()) as Cancellation;
  }

  async credits(): Promise<number> {
    return ((await (await this.call('/v1/get-user-credits', { headers: this.headers() })).json()) as Credits).credits;
  }

  /**
   * The request's Server-Sent Events, parsed, until its terminal event. A stream that breaks
   * before its end is opened again with `Last-Event-ID` (contract §9), so each event comes
   * once, in order, and the terminal event always; `lastEventId` starts after an event seen
   * earlier ('0': from the first step logged). Gives up after `reconnects` breaks in a row
   * without a new event.
   */
  async *events(id: string, opts: { preview?: boolean; signal?: AbortSignal; lastEventId?: string; reconnects?: number } = {}): AsyncGenerator<KleinEvent> {
    const path = `/v2/requests/${encodeURIComponent(id)}/events${opts.preview ? '?preview=true' : ''}`;
    let last = opts.lastEventId;
    for (let failures = 0; ; ) {
      let r: Response;
      try {
        r = await this.call(path, { headers: this.headers({ accept: 'text/event-stream', ...(last !== undefined ? { 'last-event-id': last } : {}) }), signal: opts.signal });
      } catch (err) {
        // The server's own refusals (401, 404, …) and a caller's abort end it; a network error is a break.
        if (err instanceof KleinApiError || opts.signal?.aborted || ++failures > (opts.reconnects ?? 5)) throw err;
        await new Promise((res) => setTimeout(res, 250 * failures));
        continue;
      }
      try {
        for await (const ev of readEvents(r)) {
          failures = 0;
          if (ev.id !== null) last = ev.id;
          yield ev;
          if (ev.event === 'completed' || ev.event === 'failed' || ev.event === 'cancelled') return;
        }
      } catch (err) {
        if (opts.signal?.aborted) throw err;
      }
      // The stream ended, or broke, before the terminal event: open it again after the last
      // event (after none: from the first step logged, so nothing between the two is lost).
      last ??= '0';
      if (++failures > (opts.reconnects ?? 5)) throw new Error(`the event stream of ${id} broke ${failures} times in a row before its end`);
      await new Promise((res) => setTimeout(res, 250 * failures));
    }
  }

  /** Submits and waits (through the events stream) for the terminal record. */
  async run(body: GenerateInput, opts: { onEvent?: (e: KleinEvent) => void; preview?: boolean; idempotencyKey?: string } = {}): Promise<RequestRecord> {
    const sub = await this.submit(body, { idempotencyKey: opts.idempotencyKey });
    for await (const e of this.events(sub.request_id, { preview: opts.preview })) {
      opts.onEvent?.(e);
      if (e.event === 'completed' || e.event === 'failed' || e.event === 'cancelled') return e.data;
    }
    return this.get(sub.request_id);
  }
}

/** The events of one response, as they arrive. */
async function* readEvents(r: Response): AsyncGenerator<KleinEvent> {
  if (!r.body) return;
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const ev = parseSse(buf.slice(0, cut));
      buf = buf.slice(cut + 2);
      if (ev) yield ev;
    }
  }
}

function parseSse(block: string): KleinEvent | null {
  let event = '';
  let data = '';
  let id: string | null = null;
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
    else if (line.startsWith('id: ')) id = line.slice(4);
  }
  if (!event || !data) return null;
  return { event, id, data: JSON.parse(data) } as KleinEvent;
}

async function toError(r: Response): Promise<KleinApiError> {
  const text = await r.text();
  // The envelope (contract §2), or anything a proxy in front may have answered.
  let j: Partial<ErrorEnvelope> = {};
  try {
    j = JSON.parse(text) as Partial<ErrorEnvelope>;
  } catch {
    /* not JSON */
  }
  const retry = r.headers.get('retry-after');
  return new KleinApiError(r.status, j.code ?? `http_${r.status}`, j.error ?? (text.slice(0, 200) || r.statusText), j.request_id ?? r.headers.get('x-request-id'), j.details ?? [], retry ? Number(retry) : null);
}
