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

export async function loadReferenceImages(urls: string[], options: ReferenceOptions): Promise<DecodedReference[]> {
  const allow = typeof options.allowNetworks === 'string' ? parseAllowNetworks(options.allowNetworks) : options.allowNetworks;
  return Promise.all(
    urls.map(async (url, i) => {
      const field = `image_urls[${i}]`;
      const bytes = url.startsWith('data:')
        ? parseDataUri(url, { maxBytes: options.maxBytes, field })
        : (await safeFetch(url, { allow, maxBytes: options.maxBytes, timeoutMs: options.timeoutMs, field, lookup: options.lookup, signal: options.signal })).bytes;
      options.signal?.throwIfAborted();
      return decodeReference(bytes, { maxPixels: options.maxPixels, field, signal: options.signal });
    }),
  );
}
