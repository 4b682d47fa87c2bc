/**
 * Fetch (data: or http(s) behind the SSRF guard) and decode every reference, in parallel.
 * An aborted `signal` (the client has gone) stops the fetches and skips the decodes: the
 * promise rejects with the signal's reason.
 */
import { parseDataUri } from './data-uri.js';
import { decodeReference, type DecodedReference } from './decode.js';
import { parseAllowNetworks, type Cidr } from '../net/networks.js';
import { safeFetch, type Lookup } from '../net/safe-fetch.js';

export interface ReferenceOptions {
  allowNetworks: string | Cidr[];
  maxBytes: number;
  maxPixels: number;
  timeoutMs: number;
  lookup?: Lookup;
  signal?: AbortSignal | undefined;
}

export async function loadReferenceImages(urls: string[], o: ReferenceOptions): Promise<DecodedReference[]> {
  const allow = typeof o.allowNetworks === 'string' ? parseAllowNetworks(o.allowNetworks) : o.allowNetworks;
  return Promise.all(
    urls.map(async (url, i) => {
      const field = `image_urls[${i}]`;
      const bytes = url.startsWith('data:')
        ? parseDataUri(url, { maxBytes: o.maxBytes, field })
        : (await safeFetch(url, { allow, maxBytes: o.maxBytes, timeoutMs: o.timeoutMs, field, lookup: o.lookup, signal: o.signal })).bytes;
      o.signal?.throwIfAborted();
      return decodeReference(bytes, { maxPixels: o.maxPixels, field });
    }),
  );
}
