/**
 * A typed client for klein-serve: the synchronous Segmind-compatible call, the async API
 * (submit, status, record, output, cancel, events), idempotency keys and typed errors.
 * Uses the platform's fetch; the CLI and the tests use it.
 */

export interface GenerateBody {
  prompt: string;
  image_urls?: string[];
  negative_prompt?: string;
  seed?: number;
  cfg?: number;
  sampler?: 'euler' | 'res_2s';
  steps?: number;
  aspect_ratio?: string;
  go_fast?: boolean;
  image_format?: 'png' | 'jpeg' | 'jpg' | 'webp';
  quality?: number;
  width?: number;
  height?: number;
  webhook_url?: string;
}

export type RequestStatus = 'QUEUED' | 'PROCESSING' | 'COMPLETED' | 'FAILED' | 'CANCELLED';

export interface GeneratedImage {
  bytes: Buffer;
  contentType: string;
  requestId: string;
  seed: number;
  generationTime: number;
  cost: number;
  remainingCredits: number;
}

export interface Submitted {
  request_id: string;
  status: RequestStatus;
  status_url: string;
  response_url: string;
  output_url: string;
  cancel_url: string;
  events_url: string;
}

export interface StatusView {
  request_id: string;
  status: RequestStatus;
  queue_position: number;
  progress: { step: number; total: number } | null;
  metrics: Record<string, number | null>;
}

export interface RecordView {
  request_id: string;
  status: RequestStatus;
  input: Record<string, unknown>;
  output: string | null;
  error: { code: string; message: string } | null;
  metrics: Record<string, number | null>;
}

export type KleinEvent =
  | { event: 'queued'; data: { request_id: string; position: number } }
  | { event: 'progress'; data: { step: number; total: number; preview?: { width: number; height: number; png_base64: string } } }
  | { event: 'completed' | 'failed' | 'cancelled'; data: RecordView };

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
  private readonly base: string;
  private readonly f: typeof fetch;

  constructor(private readonly o: ClientOptions) {
    this.base = o.baseUrl.replace(/\/$/, '');
    this.f = o.fetch ?? fetch;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { 'x-api-key': this.o.apiKey, ...extra };
  }

  private async call(path: string, init: RequestInit = {}): Promise<Response> {
    const r = await this.f(`${this.base}${path}`, init);
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

  async submit(body: GenerateBody, opts: { idempotencyKey?: string } = {}): Promise<Submitted> {
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

  async get(id: string): Promise<RecordView> {
    return (await (await this.call(`/v2/requests/${encodeURIComponent(id)}`, { headers: this.headers() })).json()) as RecordView;
  }

  async output(id: string): Promise<{ bytes: Buffer; contentType: string }> {
    const r = await this.call(`/v2/requests/${encodeURIComponent(id)}/output`, { headers: this.headers() });
    return { bytes: Buffer.from(await r.arrayBuffer()), contentType: r.headers.get('content-type') ?? '' };
  }

  async cancel(id: string): Promise<{ request_id: string; status: RequestStatus; cancelled: boolean }> {
    const r = await this.call(`/v2/requests/${encodeURIComponent(id)}/cancel`, { method: 'POST', headers: this.headers() });
    return (await r.json()) as { request_id: string; status: RequestStatus; cancelled: boolean };
  }

  async credits(): Promise<number> {
    return ((await (await this.call('/v1/get-user-credits', { headers: this.headers() })).json()) as { credits: number }).credits;
  }

  /** The request's Server-Sent Events, parsed, until its terminal event. */
  async *events(id: string, opts: { preview?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<KleinEvent> {
    const r = await this.call(`/v2/requests/${encodeURIComponent(id)}/events${opts.preview ? '?preview=true' : ''}`, {
      headers: this.headers({ accept: 'text/event-stream' }),
      signal: opts.signal,
    });
    if (!r.body) return;
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = parseSse(block);
        if (ev) {
          yield ev;
          if (ev.event === 'completed' || ev.event === 'failed' || ev.event === 'cancelled') return;
        }
      }
    }
  }

  /** Submits and waits (through the events stream) for the terminal record. */
  async run(body: GenerateBody, opts: { onEvent?: (e: KleinEvent) => void; preview?: boolean; idempotencyKey?: string } = {}): Promise<RecordView> {
    const sub = await this.submit(body, { idempotencyKey: opts.idempotencyKey });
    for await (const e of this.events(sub.request_id, { preview: opts.preview })) {
      opts.onEvent?.(e);
      if (e.event === 'completed' || e.event === 'failed' || e.event === 'cancelled') return e.data;
    }
    return this.get(sub.request_id);
  }
}

function parseSse(block: string): KleinEvent | null {
  let event = '';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (!event || !data) return null;
  return { event, data: JSON.parse(data) } as KleinEvent;
}

async function toError(r: Response): Promise<KleinApiError> {
  const text = await r.text();
  let j: { error?: string; code?: string; request_id?: string; details?: Array<{ field: string; message: string }> } = {};
  try {
    j = JSON.parse(text) as typeof j;
  } catch {
    /* not JSON */
  }
  const retry = r.headers.get('retry-after');
  return new KleinApiError(r.status, j.code ?? `http_${r.status}`, j.error ?? (text.slice(0, 200) || r.statusText), j.request_id ?? r.headers.get('x-request-id'), j.details ?? [], retry ? Number(retry) : null);
}
