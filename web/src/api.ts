/**
 * The page's calls to this server, every one with `x-api-key` (contract §1, §4) but the
 * event stream, which the browser's EventSource follows on its signed link (sse.ts). Failures
 * become an ApiFailure carrying the error envelope of contract §2 ({error, code,
 * request_id, details}) and Retry-After; JSON answers are checked into types here, so no
 * untyped JSON goes further into the page. The types are the server's schemas, from its
 * OpenAPI document (api-types.d.ts, generated).
 */
import type { Schemas } from './api-types.js';

/** One entry of a validation error's `details`. */
export type FieldError = NonNullable<Schemas['Error']['details']>[number];

/** A non-2xx answer of the API. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    readonly requestId: string,
    readonly details: FieldError[],
    /** Seconds, from Retry-After (429, 503); null when absent. */
    readonly retryAfter: number | null,
  ) {
    super(message);
    this.name = 'ApiFailure';
  }
}

/** The server could not be reached, or the answer was cut off. */
export class NetworkFailure extends Error {
  override name = 'NetworkFailure';
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const numOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Retry-After is delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
function retryAfterOf(h: string | null): number | null {
  if (h === null) return null;
  if (/^\d+$/.test(h.trim())) return Number(h.trim());
  const at = Date.parse(h);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

async function failureOf(res: Response): Promise<ApiFailure> {
  const text = await res.text().catch(() => '');
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not the API's envelope (a proxy's page, say): its text stands as the message.
  }
  const o = isObject(body) ? body : {};
  const details = Array.isArray(o.details)
    ? o.details.flatMap((d) => (isObject(d) && typeof d.field === 'string' && typeof d.message === 'string' ? [{ field: d.field, message: d.message }] : []))
    : [];
  return new ApiFailure(
    res.status,
    str(o.error) ?? (text.trim().slice(0, 300) || res.statusText),
    str(o.code) ?? '',
    str(o.request_id) ?? res.headers.get('x-request-id') ?? '',
    details,
    retryAfterOf(res.headers.get('retry-after')),
  );
}

/**
 * The server's URLs are absolute (built from KLEIN_PUBLIC_URL or the request's host); the
 * page calls them on its own origin, where it was loaded from, so no CORS is involved.
 */
export function local(url: string): string {
  const u = new URL(url, location.href);
  return u.origin === location.origin ? u.href : `${u.pathname}${u.search}`;
}

async function call(url: string, key: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(local(url), { ...init, headers: { ...(init.headers as Record<string, string> | undefined), 'x-api-key': key } });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new NetworkFailure(`Could not reach the server (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!res.ok) throw await failureOf(res);
  return res;
}

async function json(res: Response): Promise<Json> {
  const body: unknown = await res.json().catch(() => null);
  if (!isObject(body)) throw new NetworkFailure(`${res.url} did not answer a JSON object`);
  return body;
}

/** What the page reads of a submitted request. */
export type Submitted = Pick<Schemas['Submitted'], 'request_id' | 'events_url' | 'output_url' | 'cancel_url' | 'response_url'>;

export async function submit(model: string, key: string, body: Json): Promise<Submitted> {
  const o = await json(
    await call(`/v2/${encodeURIComponent(model)}`, key, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  );
  const out: Partial<Submitted> = {};
  for (const k of ['request_id', 'events_url', 'output_url', 'cancel_url', 'response_url'] as const) {
    const v = str(o[k]);
    if (v === undefined) throw new NetworkFailure(`the submit answer lacks ${k}`);
    out[k] = v;
  }
  return out as Submitted;
}

/** A request's status: the document's list, which is the server's REQUEST_STATUSES. */
export type RequestStatus = Schemas['RequestRecord']['status'];
/** The final statuses (src/contract/request-states.ts TERMINAL; each value checked against the list). */
export const TERMINAL: ReadonlySet<RequestStatus> = new Set<RequestStatus>(['COMPLETED', 'FAILED', 'CANCELLED']);

type Metrics = Schemas['RequestRecord']['metrics'];

/** What the page reads of a request record (GET /v2/requests/{id}, and the data of the terminal events). */
export interface RequestRecord extends Pick<Schemas['RequestRecord'], 'request_id' | 'status' | 'input' | 'error' | 'output_url'> {
  /** The timings and the cost; one the answer lacks is null. */
  metrics: { [K in 'queue_time' | 'inference_time' | 'total_time' | 'cost']: Metrics[K] | null };
}

export function recordOf(v: unknown): RequestRecord {
  if (!isObject(v) || typeof v.request_id !== 'string' || typeof v.status !== 'string') throw new NetworkFailure('not a request record');
  const m = isObject(v.metrics) ? v.metrics : {};
  const e = isObject(v.error) ? v.error : null;
  return {
    request_id: v.request_id,
    status: v.status as RequestStatus,
    input: isObject(v.input) ? v.input : {},
    error: e ? { code: str(e.code) ?? '', message: str(e.message) ?? null } : null,
    metrics: { queue_time: numOrNull(m.queue_time), inference_time: numOrNull(m.inference_time), total_time: numOrNull(m.total_time), cost: numOrNull(m.cost) },
    output_url: str(v.output_url) ?? `/v2/requests/${encodeURIComponent(v.request_id)}/output`,
  };
}

export async function getRecord(url: string, key: string): Promise<RequestRecord> {
  return recordOf(await json(await call(url, key)));
}

/** A fresh events_url of a request (its token renewed), from its record. */
export async function eventsUrl(recordUrl: string, key: string): Promise<string> {
  const v = (await json(await call(recordUrl, key))).events_url;
  if (typeof v !== 'string') throw new NetworkFailure('the record lacks events_url');
  return v;
}

/** The output image's bytes (GET /v2/requests/{id}/output needs the key, so no plain <img src>). */
export async function output(url: string, key: string): Promise<Blob> {
  return (await call(url, key)).blob();
}

export async function cancel(url: string, key: string): Promise<void> {
  await call(url, key, { method: 'POST' });
}

/** GET /v1/get-user-credits: the key's balance (Schemas['Credits']). */
export async function credits(key: string): Promise<Schemas['Credits']['credits']> {
  const o = await json(await call('/v1/get-user-credits', key));
  if (typeof o.credits !== 'number') throw new NetworkFailure('the credits answer lacks credits');
  return o.credits;
}
