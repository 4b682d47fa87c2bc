/**
 * What a request's LoRA is, before anything is charged or downloaded whole (issue 18 point
 * 1): its header, read from the URL or the hub with two Range requests or from
 * KLEIN_LORA_DIR, then checked against the model's Linear layers. The gateway calls this for
 * each entry of `loras`; the body is fetched later, by the cache, on the worker.
 */
import type { Cidr } from '../net/networks.js';
import type { Lookup } from '../net/safe-fetch.js';
import { checkLora, type LinearDims, type LoraCheck } from './check.js';
import { readFileHeader, readRemoteHeader, type SafetensorsHeader } from './safetensors-header.js';
import { sourceHeaders, type LoraSource } from './source.js';

export interface InspectOptions {
  /** KLEIN_ALLOW_NETWORKS, parsed. */
  allow: Cidr[];
  /** KLEIN_LORA_MAX_BYTES. */
  maxBytes: number;
  /** For the header fetch, every hop included. */
  timeoutMs: number;
  /** The model's Linear in/out features; null skips the fit. */
  dims: LinearDims | null;
  hfToken?: string | undefined;
  lookup?: Lookup | undefined;
  signal?: AbortSignal | undefined;
}

export interface Inspected extends LoraCheck {
  header: SafetensorsHeader;
}

export async function inspectLora(source: LoraSource, options: InspectOptions): Promise<Inspected> {
  const limits = { field: source.field, maxBytes: options.maxBytes };
  const header =
    source.kind === 'dir'
      ? await readFileHeader(source.file, limits)
      : await readRemoteHeader(source.url, {
          ...limits,
          allow: options.allow,
          timeoutMs: options.timeoutMs,
          headers: sourceHeaders(source, options.hfToken),
          lookup: options.lookup,
          signal: options.signal,
        });
  return { ...checkLora(header, options.dims, source.field), header };
}
