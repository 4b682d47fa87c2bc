/**
 * One GET of a LoRA URL through the SSRF guard, for the header reader (a Range request) and
 * the cache (the whole file): the guard's own walk (src/net/safe-fetch.ts `openGuarded`: every
 * hop checked, its address pinned, redirects followed by hand, at most 3 — hub downloads
 * redirect once to a CDN) with the body left to the caller. Headers such as the hub's Bearer
 * token go to the first origin only: a redirect to another origin drops them, as the Fetch
 * standard's "HTTP-redirect fetch" drops Authorization across origins. A fetch that fails
 * is an invalid_lora here (url_blocked stays).
 */
import { ApiError } from '../contract/errors.js';
import type { Cidr } from '../net/networks.js';
import { openGuarded as openThroughGuard, type GuardedResponse, type Lookup } from '../net/safe-fetch.js';
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

export type OpenedResponse = GuardedResponse;

/**
 * A deadline for a whole operation (every hop, every byte): the caller's signal (the client
 * has gone) or the timeout, whichever comes first.
 */
export class Deadline {
  readonly signal: AbortSignal;
  private readonly timeout: AbortSignal;
  constructor(
    timeoutMs: number,
    readonly caller?: AbortSignal | undefined,
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
  deadline.check(field);
  try {
    return await openThroughGuard(url, {
      ...options,
      userAgent: options.userAgent ?? 'klein-serve/0.1 (+LoRA fetch)',
      originHeaders: options.headers,
      hopHeaders: options.range ? { range: `bytes=${options.range[0]}-${options.range[1]}` } : undefined,
      deadline: deadline.signal,
      caller: deadline.caller,
    });
  } catch (err) {
    throw asLoraError(err, field);
  }
}

/** The refusal for an answer that is neither the file nor the asked range. */
export function statusError(res: OpenedResponse, field: string): ApiError {
  const origin = new URL(res.url).origin;
  const hint = res.status === 401 || res.status === 403 || res.status === 404 ? ' (no such file, or a private one: gated hub repos need HF_TOKEN)' : '';
  return loraError(field, `${origin} answered ${res.status}${hint}`);
}
