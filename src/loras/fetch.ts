/**
 * One GET of a LoRA URL through the SSRF guard, for the header reader (a Range request) and
 * the cache (the whole file). It is safeFetch's walk (src/net/safe-fetch.ts) with the body
 * left to the caller: every hop is checked (checkUrl), its host resolved once and every
 * address judged (resolveChecked), the socket pinned to the judged address (pinnedAgent), and
 * redirects followed by hand, at most 3 (hub downloads redirect once to a CDN). Headers such as
 * the hub's Bearer token go to the first origin only: a redirect to another origin drops them,
 * as the Fetch standard's "HTTP-redirect fetch" drops Authorization across origins.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { request } from 'undici';
import { ApiError } from '../contract/errors.js';
import type { Cidr } from '../net/networks.js';
import { checkUrl, pinnedAgent, resolveChecked, type Lookup } from '../net/safe-fetch.js';
import { loraError } from './source.js';

export interface LoraFetchOptions {
  /** KLEIN_ALLOW_NETWORKS, parsed. */
  allow: Cidr[];
  /** The request field the errors name (`loras[0].path`). */
  field: string;
  /** Sent to the first origin only. */
  headers?: Record<string, string> | undefined;
  lookup?: Lookup | undefined;
  maxRedirects?: number | undefined;
  userAgent?: string | undefined;
}

export interface OpenedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
  /** The URL that answered, after redirects. */
  url: string;
  /** Stops the body and frees the pinned connection. */
  close(): Promise<void>;
}

/**
 * A deadline for a whole operation (every hop, every byte): the caller's signal (the client
 * has gone) or the timeout, whichever comes first.
 */
export class Deadline {
  readonly signal: AbortSignal;
  private readonly timeout: AbortSignal;
  constructor(
    timeoutMs: number,
    private readonly caller?: AbortSignal | undefined,
  ) {
    this.timeout = AbortSignal.timeout(timeoutMs);
    this.signal = caller ? AbortSignal.any([this.timeout, caller]) : this.timeout;
  }

  /** Throws the caller's reason when the caller has gone, an invalid_lora when time is up. */
  check(field: string): void {
    if (this.caller?.aborted) throw this.caller.reason;
    if (this.timeout.aborted) throw loraError(field, 'the download timed out');
  }

  /** What a failed network call becomes: the caller's reason, a timeout, or `what` failed. */
  failure(field: string, what: string, err: unknown): unknown {
    if (err instanceof ApiError) return err;
    if (this.caller?.aborted) return this.caller.reason;
    if (this.timeout.aborted) return loraError(field, `${what} timed out`);
    return loraError(field, `${what} failed (${(err as { code?: string }).code ?? 'network error'})`);
  }
}

/** The guard's own errors name a reference image; for a LoRA a failed fetch is invalid_lora. url_blocked stays. */
function asLoraError(err: unknown, field: string): unknown {
  if (err instanceof ApiError && err.code === 'image_fetch_failed') {
    return new ApiError('invalid_lora', err.message, { details: err.details ?? [{ field, message: err.message }] });
  }
  return err;
}

export async function openGuarded(url: string, options: LoraFetchOptions & { range?: [number, number] | undefined }, deadline: Deadline): Promise<OpenedResponse> {
  const { field } = options;
  const maxRedirects = options.maxRedirects ?? 3;
  let current: URL;
  try {
    current = checkUrl(url, { field });
  } catch (err) {
    throw asLoraError(err, field);
  }
  const firstOrigin = current.origin;
  for (let hop = 0; ; hop++) {
    deadline.check(field);
    let pinned;
    try {
      pinned = await resolveChecked(current, { allow: options.allow, field, lookup: options.lookup });
    } catch (err) {
      throw asLoraError(err, field);
    }
    deadline.check(field);
    const agent = pinnedAgent(pinned);
    const headers: Record<string, string> = {
      'user-agent': options.userAgent ?? 'klein-serve/0.1 (+LoRA fetch)',
      ...(current.origin === firstOrigin ? options.headers : {}),
      ...(options.range ? { range: `bytes=${options.range[0]}-${options.range[1]}` } : {}),
    };
    let res: Dispatcher.ResponseData;
    try {
      res = await request(current, { method: 'GET', dispatcher: agent, signal: deadline.signal, headers });
    } catch (err) {
      void agent.destroy().catch(() => undefined);
      throw deadline.failure(field, `fetching ${current.origin}`, err);
    }
    const close = async () => {
      // undici's body errors with RequestAbortedError when destroyed unread; that end is wanted here.
      res.body.on('error', () => undefined);
      res.body.destroy();
      await agent.destroy().catch(() => undefined);
    };
    if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
      await close();
      if (hop >= maxRedirects) throw loraError(field, `more than ${maxRedirects} redirects`);
      const loc = Array.isArray(res.headers.location) ? res.headers.location[0]! : res.headers.location;
      try {
        current = checkUrl(new URL(loc, current).toString(), { field });
      } catch (err) {
        throw asLoraError(err, field);
      }
      continue;
    }
    return { status: res.statusCode, headers: res.headers, body: res.body, url: current.toString(), close };
  }
}

/** The refusal for an answer that is neither the file nor the asked range. */
export function statusError(res: OpenedResponse, field: string): ApiError {
  const origin = new URL(res.url).origin;
  const hint = res.status === 401 || res.status === 403 || res.status === 404 ? ' (no such file, or a private one: gated hub repos need HF_TOKEN)' : '';
  return loraError(field, `${origin} answered ${res.status}${hint}`);
}
