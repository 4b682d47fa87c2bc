/**
 * Server-side fetch of user-given URLs, safe against SSRF. For each hop:
 *   1. http or https only, no credentials in the URL;
 *   2. the host is resolved ONCE (IP literals in any form are normalised by the WHATWG
 *      URL parser: decimal, octal, hex, short IPv4, bracketed IPv6) and EVERY address is
 *      checked against the policy (networks.ts);
 *   3. the connection is pinned to the checked address (the socket's lookup answers with
 *      it), so DNS rebinding cannot move the target; TLS still verifies the host name;
 *   4. redirects are followed by hand (at most 3), each target checked from step 1.
 * Caps on bytes (Content-Length early, then the stream) and on total time.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { ApiError } from '../contract/errors.js';
import { addressBlockReason, type Cidr } from './networks.js';
import ipaddr from 'ipaddr.js';

export type Lookup = (hostname: string) => Promise<LookupAddress[]>;

export interface SafeFetchOptions {
  allow: Cidr[];
  maxBytes: number;
  timeoutMs: number;
  maxRedirects?: number;
  field: string;
  lookup?: Lookup;
  userAgent?: string;
  /** Aborts the fetch (the caller has gone); the promise then rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

const defaultLookup: Lookup = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, verbatim: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))));

function origin(u: URL): string {
  return `${u.protocol}//${u.host}`;
}

/** Resolves the host once and checks every address; returns the one to connect to. */
export async function resolveChecked(u: URL, options: Pick<SafeFetchOptions, 'allow' | 'field' | 'lookup'>): Promise<LookupAddress> {
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  let addrs: LookupAddress[];
  if (ipaddr.isValid(host)) {
    addrs = [{ address: host, family: host.includes(':') ? 6 : 4 }];
  } else {
    if (/^localhost\.?$/i.test(host) || /\.localhost\.?$/i.test(host)) {
      throw new ApiError('url_blocked', `${options.field}: ${origin(u)} points at a blocked address (localhost)`, { details: [{ field: options.field, message: 'points at a blocked address (localhost)' }] });
    }
    try {
      addrs = await (options.lookup ?? defaultLookup)(host);
    } catch {
      throw new ApiError('image_fetch_failed', `${options.field}: cannot resolve ${host}`, { details: [{ field: options.field, message: `cannot resolve ${host}` }] });
    }
    if (addrs.length === 0) throw new ApiError('image_fetch_failed', `${options.field}: ${host} has no address`, { details: [{ field: options.field, message: `${host} has no address` }] });
  }
  for (const a of addrs) {
    const why = addressBlockReason(a.address, options.allow);
    if (why) {
      throw new ApiError('url_blocked', `${options.field}: ${origin(u)} points at a blocked address (${why})`, {
        details: [{ field: options.field, message: `points at a blocked address (${why})` }],
      });
    }
  }
  return addrs[0]!;
}

/** http(s) only, no credentials. */
export function checkUrl(raw: string, options: Pick<SafeFetchOptions, 'field'>): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ApiError('image_fetch_failed', `${options.field}: not a valid URL`, { details: [{ field: options.field, message: 'is not a valid URL' }] });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ApiError('url_blocked', `${options.field}: only http and https URLs may be fetched`, { details: [{ field: options.field, message: 'only http and https URLs may be fetched' }] });
  }
  if (u.username || u.password) {
    throw new ApiError('url_blocked', `${options.field}: URLs with credentials are not fetched`, { details: [{ field: options.field, message: 'URLs with credentials are not fetched' }] });
  }
  return u;
}

/** A response whose body is still to be read, from the hop that answered. */
export interface GuardedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
  /** The URL that answered, after redirects. */
  url: string;
  /** Stops the body and frees the pinned connection (safe to call after the body was read). */
  close(): Promise<void>;
}

export interface OpenGuardedOptions extends Pick<SafeFetchOptions, 'allow' | 'field' | 'lookup' | 'maxRedirects'> {
  /** Every hop's user agent. */
  userAgent: string;
  /** Sent on every hop (Accept, Range). */
  hopHeaders?: Record<string, string> | undefined;
  /** Sent to the first origin only: a redirect to another origin drops them (an Authorization token must not follow it). */
  originHeaders?: Record<string, string> | undefined;
  /** Ends the whole operation: its timeout, and the caller's signal. */
  deadline: AbortSignal;
  /** The caller's own signal: when it is the one that aborted, its reason is thrown, not a network failure. */
  caller?: AbortSignal | undefined;
}

/**
 * One GET through the guard, every hop checked (steps 1–4 above), the body left to the
 * caller: safeFetch reads it whole with its caps, the LoRA reader a range, the LoRA cache
 * streams it to disk. A redirect is followed when it is a 3xx with a Location; any other
 * status is the caller's to judge. Errors: the guard's (url_blocked, image_fetch_failed for a
 * name that does not resolve or a URL that does not parse), image_fetch_failed for a
 * failed or timed-out connection and for too many redirects, the caller's reason when it has
 * gone.
 */
export async function openGuarded(url: string, options: OpenGuardedOptions): Promise<GuardedResponse> {
  const { field, deadline, caller } = options;
  const gone = () => {
    if (caller?.aborted) throw caller.reason;
  };
  gone();
  const maxRedirects = options.maxRedirects ?? 3;
  let current = checkUrl(url, options);
  const firstOrigin = current.origin;
  for (let hop = 0; ; hop++) {
    const pinned = await resolveChecked(current, options);
    gone();
    const agent = pinnedAgent(pinned);
    const headers = { 'user-agent': options.userAgent, ...options.hopHeaders, ...(current.origin === firstOrigin ? options.originHeaders : {}) };
    const res = await request(current, { method: 'GET', dispatcher: agent, signal: deadline, headers }).catch((err: unknown) => {
      void agent.destroy().catch(() => undefined);
      gone();
      const why = deadline.aborted ? 'timed out' : `failed (${(err as { code?: string }).code ?? 'network error'})`;
      throw new ApiError('image_fetch_failed', `${field}: fetching ${origin(current)} ${why}`, { details: [{ field, message: `fetch ${why}` }] });
    });
    const close = async () => {
      // undici's body errors with RequestAbortedError when destroyed unread; that end is wanted here.
      res.body.on('error', () => undefined);
      res.body.destroy();
      await agent.destroy().catch(() => undefined);
    };
    if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
      await close();
      if (hop >= maxRedirects) {
        throw new ApiError('image_fetch_failed', `${field}: more than ${maxRedirects} redirects`, { details: [{ field, message: `more than ${maxRedirects} redirects` }] });
      }
      const loc = Array.isArray(res.headers.location) ? res.headers.location[0]! : res.headers.location;
      current = checkUrl(new URL(loc, current).toString(), options);
      continue;
    }
    return { status: res.statusCode, headers: res.headers, body: res.body, url: current.toString(), close };
  }
}

export async function safeFetch(url: string, options: SafeFetchOptions): Promise<{ bytes: Buffer; finalUrl: string }> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const deadline = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
  const res = await openGuarded(url, {
    ...options,
    userAgent: options.userAgent ?? 'klein-serve/0.1 (+reference image fetch)',
    hopHeaders: { accept: 'image/png,image/jpeg,image/webp;q=0.9,*/*;q=0.1' },
    deadline,
    caller: options.signal,
  });
  try {
    if (res.status < 200 || res.status >= 300) {
      throw new ApiError('image_fetch_failed', `${options.field}: ${origin(new URL(res.url))} answered ${res.status}`, { details: [{ field: options.field, message: `the server answered ${res.status}` }] });
    }
    const len = Number(res.headers['content-length']);
    if (Number.isFinite(len) && len > options.maxBytes) throw tooLarge(options);
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body) {
        total += (chunk as Buffer).length;
        if (total > options.maxBytes) throw tooLarge(options);
        chunks.push(chunk as Buffer);
      }
    } catch (err) {
      if (err instanceof ApiError) throw err;
      if (options.signal?.aborted) throw options.signal.reason;
      const why = deadline.aborted ? 'timed out' : 'was cut off';
      throw new ApiError('image_fetch_failed', `${options.field}: the download ${why}`, { details: [{ field: options.field, message: `the download ${why}` }] });
    }
    return { bytes: Buffer.concat(chunks), finalUrl: res.url };
  } finally {
    await res.close();
  }
}

/** An undici Agent whose every socket goes to `pinned`, whatever name the URL has. */
export function pinnedAgent(pinned: LookupAddress): Agent {
  return new Agent({
    connect: {
      lookup: ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) => {
        if (opts?.all) cb(null, [{ address: pinned.address, family: pinned.family }]);
        else cb(null, pinned.address, pinned.family);
      }) as never,
    },
  });
}

function tooLarge(options: SafeFetchOptions): ApiError {
  return new ApiError('image_too_large', `${options.field}: the image is larger than ${options.maxBytes} bytes`, {
    details: [{ field: options.field, message: `is larger than ${options.maxBytes} bytes` }],
  });
}
