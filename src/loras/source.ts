/**
 * Where a request's LoRA comes from (contract §7). `path` is one of:
 *   - an http(s) URL: fetched through the SSRF guard like `image_urls` (src/net/safe-fetch.ts);
 *   - a Hugging Face hub repo id `owner/name`, optionally `owner/name@revision`, with
 *     `weight_name` naming the file in the repo (default `pytorch_lora_weights.safetensors`,
 *     diffusers' LORA_WEIGHT_NAME_SAFE); fetched from
 *     `https://huggingface.co/<repo>/resolve/<revision>/<weight_name>`, the URL the hub's own
 *     client (huggingface_hub's `hf_hub_url`) builds;
 *   - the name of a file in KLEIN_LORA_DIR: a bare name, never a path.
 * Parsing is pure: nothing is fetched or opened here.
 */
import { join } from 'node:path';
import { ApiError } from '../contract/errors.js';
import { checkUrl } from '../net/safe-fetch.js';

/** diffusers' LORA_WEIGHT_NAME_SAFE: what `load_lora_weights(repo_id)` looks for without a weight_name. */
export const DEFAULT_WEIGHT_NAME = 'pytorch_lora_weights.safetensors';
export const HUB_ENDPOINT = 'https://huggingface.co';

export type LoraSource =
  | { kind: 'url'; url: string; field: string }
  | { kind: 'hub'; repo: string; revision: string; weightName: string; url: string; field: string }
  | { kind: 'dir'; name: string; file: string; field: string };

export interface LoraSourceOptions {
  /** KLEIN_LORA_DIR; unset = no local LoRAs. */
  loraDir?: string | undefined;
  /** Only for tests and mirrors; the hub otherwise. */
  hubEndpoint?: string | undefined;
}

export interface LoraRequestEntry {
  path: string;
  weight_name?: string | undefined;
}

export function loraError(field: string, message: string): ApiError {
  return new ApiError('invalid_lora', `${field}: ${message}`, { details: [{ field, message }] });
}

/**
 * The hub's repo id rule (huggingface_hub `validate_repo_id`): letters, digits, `-`, `_`, `.`;
 * no `--` or `..`; neither part starts or ends with `-` or `.`; at most 96 characters.
 */
const REPO_PART = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
/** Git ref names and commit hashes: no spaces, no `..`, nothing a URL would reinterpret. */
const REVISION = /^[A-Za-z0-9][A-Za-z0-9_.\/-]{0,254}$/;

function hubRepo(path: string): { repo: string; revision: string } | null {
  const at = path.indexOf('@');
  const repo = at < 0 ? path : path.slice(0, at);
  const revision = at < 0 ? 'main' : path.slice(at + 1);
  const parts = repo.split('/');
  if (parts.length !== 2 || repo.length > 96) return null;
  if (!parts.every((p) => REPO_PART.test(p) && !p.includes('--') && !p.includes('..'))) return null;
  if (!REVISION.test(revision) || revision.includes('..') || revision.endsWith('/')) return null;
  return { repo, revision };
}

/** `weight_name` may name a file in a subfolder of the repo, never climb out of it. */
function checkWeightName(name: string, field: string): string {
  const segments = name.split('/');
  if (name.startsWith('/') || name.includes('\\') || name.includes('\0') || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw loraError(field, 'must be a file name in the repo (no absolute path, "..", or empty segment)');
  }
  if (!name.endsWith('.safetensors')) throw loraError(field, 'must name a .safetensors file');
  return name;
}

/** A bare file name: no separator, no `.`/`..`, not hidden, ends .safetensors. */
function checkDirName(name: string, field: string): string {
  if (name.includes('/') || name.includes('\\') || name.includes('\0') || name.startsWith('.')) {
    throw loraError(field, 'a file in KLEIN_LORA_DIR is named by its bare file name (no path, no "..", not hidden)');
  }
  if (!name.endsWith('.safetensors')) throw loraError(field, 'must name a .safetensors file');
  return name;
}

/**
 * Reads one entry of `loras`. Refusals are `invalid_lora` naming `loras[i].path` (or
 * `.weight_name`); a URL that is not http(s) or carries credentials is `url_blocked`, as for
 * `image_urls`.
 */
export function parseLoraSource(entry: LoraRequestEntry, index: number, options: LoraSourceOptions = {}): LoraSource {
  const field = `loras[${index}].path`;
  const weightField = `loras[${index}].weight_name`;
  const path = entry.path.trim();
  if (path === '') throw loraError(field, 'is empty');

  // Anything with a scheme is a URL, judged by the SSRF guard's rules (ftp:, file:, … are url_blocked).
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(path)) {
    if (entry.weight_name !== undefined) throw loraError(weightField, 'is only for hub repo ids; a URL names its file itself');
    const url = checkUrl(path, { field });
    return { kind: 'url', url: url.toString(), field };
  }

  if (path.includes('/')) {
    const hub = hubRepo(path);
    if (!hub) {
      throw loraError(field, 'is neither an http(s) URL, a hub repo id "owner/name[@revision]", nor a bare file name in KLEIN_LORA_DIR');
    }
    const weightName = entry.weight_name === undefined ? DEFAULT_WEIGHT_NAME : checkWeightName(entry.weight_name, weightField);
    const base = (options.hubEndpoint ?? HUB_ENDPOINT).replace(/\/+$/, '');
    const file = weightName.split('/').map(encodeURIComponent).join('/');
    const url = `${base}/${hub.repo}/resolve/${encodeURIComponent(hub.revision)}/${file}`;
    return { kind: 'hub', repo: hub.repo, revision: hub.revision, weightName, url, field };
  }

  if (entry.weight_name !== undefined) throw loraError(weightField, 'is only for hub repo ids');
  const name = checkDirName(path, field);
  if (!options.loraDir) throw loraError(field, `"${name}" would be a file in KLEIN_LORA_DIR, which this server does not set`);
  return { kind: 'dir', name, file: join(options.loraDir, name), field };
}

/** The cache's index key: the same key for the same file, whatever the request looked like. */
export function sourceKey(source: LoraSource): string {
  switch (source.kind) {
    case 'url':
      return `url:${source.url}`;
    case 'hub':
      return `hub:${source.repo}@${source.revision}:${source.weightName}`;
    case 'dir':
      return `dir:${source.name}`;
  }
}

/** What to send to the first hop: the hub gets HF_TOKEN as a Bearer token when one is set. */
export function sourceHeaders(source: LoraSource, hfToken: string | undefined): Record<string, string> {
  return source.kind === 'hub' && hfToken ? { authorization: `Bearer ${hfToken}` } : {};
}
