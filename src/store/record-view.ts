/**
 * The public view of a request (cog's envelope: id, status, input, output, error, metrics,
 * timestamps), used by GET /v2/requests/{id} and by webhooks. Internal columns (key ids,
 * leases, worker ids, idempotency hashes) never leave through here.
 *
 * Links (contract §9): `output` and `events_url` work without the API key until they
 * expire (signed by storage/request-links.ts); `output_url` and the other `*_url` are the
 * stable API routes, which need the key.
 */
import { microToCredits } from '../billing/pricing.js';
import type { RequestLinks } from '../storage/request-links.js';
import type { RequestRow } from './requests.js';

export interface RequestUrls {
  status_url: string;
  response_url: string;
  output_url: string;
  cancel_url: string;
  events_url: string;
}

/** The request's links; `links` gives `events_url` its short-lived token (without it, the bare route, which needs the key). */
export function urlsFor(base: string, id: string, links?: Pick<RequestLinks, 'events'>): RequestUrls {
  const r = `${base.replace(/\/$/, '')}/v2/requests/${id}`;
  const events_url = links ? links.events(base, id) : `${r}/events`;
  return { status_url: `${r}/status`, response_url: r, output_url: `${r}/output`, cancel_url: `${r}/cancel`, events_url };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());

export function metricsOf(row: RequestRow, remainingMicro?: number): Record<string, number | null> {
  const created = Number(row.created_at);
  const started = row.started_at === null ? null : Number(row.started_at);
  const done = row.completed_at === null ? null : Number(row.completed_at);
  const timings = row.timings ? (JSON.parse(row.timings) as Record<string, number>) : {};
  return {
    queue_time: started !== null ? (started - created) / 1000 : null,
    inference_time: typeof timings.generation_s === 'number' ? timings.generation_s : null,
    total_time: done !== null ? (done - created) / 1000 : null,
    cost: row.status === 'COMPLETED' && row.cost_micro !== null ? Number(microToCredits(Number(row.cost_micro))) : 0,
    // How many requests the engine ran together with this one (itself included); null until it completes.
    batch_size: typeof timings.batch_size === 'number' ? timings.batch_size : null,
    ...(remainingMicro !== undefined ? { remaining_credits: Number(microToCredits(remainingMicro)) } : {}),
  };
}

/** Why a request FAILED or was CANCELLED (the record's and the status answer's `error`); else null. */
export function errorView(row: RequestRow): { code: string; message: string | null } | null {
  return row.error_code ? { code: row.error_code, message: row.error_message } : null;
}

export function recordView(row: RequestRow, base: string, opts: { output?: string | null; remainingMicro?: number; links?: Pick<RequestLinks, 'events'> } = {}) {
  const urls = urlsFor(base, row.id, opts.links);
  return {
    request_id: row.id,
    status: row.status,
    input: JSON.parse(row.params) as Record<string, unknown>,
    // A COMPLETED request has no output when its answer was never delivered (queue/delivery.ts).
    output: row.status === 'COMPLETED' && row.output_key ? (opts.output ?? urls.output_url) : null,
    error: errorView(row),
    metrics: metricsOf(row, opts.remainingMicro),
    created_at: iso(row.created_at),
    started_at: iso(row.started_at),
    completed_at: iso(row.completed_at),
    expires_at: iso(row.expires_at),
    ...urls,
  };
}

/**
 * The record with its key-less links (contract §9): `output` the signed (or S3-presigned)
 * link, `events_url` with its token. `output` given (base64) replaces the link.
 */
export async function signedRecordView(row: RequestRow, base: string, links: RequestLinks, opts: { output?: string; remainingMicro?: number } = {}) {
  const output = opts.output ?? (row.status === 'COMPLETED' && row.output_key ? await links.output(base, row.id, row.output_key) : null);
  return recordView(row, base, { output, links, remainingMicro: opts.remainingMicro });
}
