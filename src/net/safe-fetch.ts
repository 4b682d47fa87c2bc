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

export async function safeFetch(url: string, options: SafeFetchOptions): Promise<{ bytes: Buffer; finalUrl: string }> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const deadline = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
  const gone = () => {
    if (options.signal?.aborted) throw options.signal.reason;
  };
  gone();
  const maxRedirects = options.maxRedirects ?? 3;
  let current = checkUrl(url, options);
  for (let hop = 0; ; hop++) {
    const pinned = await resolveChecked(current, options);
    gone();
    const agent = pinnedAgent(pinned);
    try {
      const res = await request(current, {
        method: 'GET',
        dispatcher: agent,
        signal: deadline,
        headers: { 'user-agent': options.userAgent ?? 'klein-serve/0.1 (+reference image fetch)', accept: 'image/png,image/jpeg,image/webp;q=0.9,*/*;q=0.1' },
      }).catch((err: unknown) => {
        gone();
        const why = deadline.aborted ? 'timed out' : `failed (${(err as { code?: string }).code ?? 'network error'})`;
        throw new ApiError('image_fetch_failed', `${options.field}: fetching ${origin(current)} ${why}`, { details: [{ field: options.field, message: `fetch ${why}` }] });
      });
      if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
        await res.body.dump();
        if (hop >= maxRedirects) {
          throw new ApiError('image_fetch_failed', `${options.field}: more than ${maxRedirects} redirects`, { details: [{ field: options.field, message: `more than ${maxRedirects} redirects` }] });
        }
        const loc = Array.isArray(res.headers.location) ? res.headers.location[0]! : res.headers.location;
        current = checkUrl(new URL(loc, current).toString(), options);
        continue;
      }
      if (res.statusCode < 200 || res.statusCode >= 300) {
        await res.body.dump();
        throw new ApiError('image_fetch_failed', `${options.field}: ${origin(current)} answered ${res.statusCode}`, { details: [{ field: options.field, message: `the server answered ${res.statusCode}` }] });
      }
      const len = Number(res.headers['content-length']);
      if (Number.isFinite(len) && len > options.maxBytes) {
        res.body.destroy();
        throw tooLarge(options);
      }
      const chunks: Buffer[] = [];
      let total = 0;
      try {
        for await (const chunk of res.body) {
          total += (chunk as Buffer).length;
          if (total > options.maxBytes) {
            res.body.destroy();
            throw tooLarge(options);
          }
          chunks.push(chunk as Buffer);
        }
      } catch (err) {
        if (err instanceof ApiError) throw err;
        gone();
        const why = deadline.aborted ? 'timed out' : 'was cut off';
        throw new ApiError('image_fetch_failed', `${options.field}: the download ${why}`, { details: [{ field: options.field, message: `the download ${why}` }] });
      }
      return { bytes: Buffer.concat(chunks), finalUrl: current.toString() };
    } finally {
      void agent.close().catch(() => undefined);
    }
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
