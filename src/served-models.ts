/**
 * KLEIN_MODELS (contract §6): `slug=model,…`, each model a tiny variant, a local
 * diffusers-layout directory, or a hub id; and each model's variant, read from its files
 * before any engine starts (the gateway's defaults, OpenAPI document and prices need it):
 *
 * - the miniatures: `tiny` and `tiny-9b` are distilled, `tiny-base` is not, `tiny:<v>` is
 *   the engine's variant `v` (engine/klein_engine/tiny.py); `simulated[:…]`, the engine
 *   without a model (benchmarks and tests), counts as distilled;
 * - a directory: its model_index.json's `is_distilled` (diffusers' Flux2KleinPipeline
 *   registers it; absent means base, as the engine reads it in load.py);
 * - a hub id: the same file in the Hugging Face cache when it was downloaded before
 *   (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub);
 * - else (a hub id not downloaded here, a directory only the workers mount): the name.
 *   Black Forest Labs name the undistilled checkpoints `FLUX.2-klein-base-…`.
 *
 * The engine reports the variant it loaded; one that disagrees is refused and /health says
 * why (worker/engine-process.ts), so a guess from a name never runs with wrong defaults. A
 * directory that does not exist is the engine's to report (502 with the reason), as before.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { RESERVED_SLUGS, SLUG_PATTERN, ServedModels, VARIANT_DEFAULTS, type ServedModel, type Variant } from './contract/models.js';

type Env = Record<string, string | undefined>;

/** The miniatures' variants by name (engine/klein_engine/tiny.py's MODEL_NAMES and VARIANTS). */
const TINY: Readonly<Record<string, Variant>> = { tiny: 'distilled', 'tiny-base': 'base', 'tiny-9b': 'distilled' };
const TINY_VARIANTS: Readonly<Record<string, Variant>> = { distilled: 'distilled', base: 'base', 'static-shift': 'distilled', '9b': 'distilled' };

function variantOfIndex(path: string): Variant | string {
  try {
    const index = JSON.parse(readFileSync(path, 'utf8')) as { is_distilled?: unknown };
    return index.is_distilled === true ? 'distilled' : 'base';
  } catch (err) {
    return `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** model_index.json of a hub id in the Hugging Face cache, newest snapshot first; null when not cached. */
function cachedIndex(repoId: string, env: Env): string | null {
  const hub = env.HF_HUB_CACHE || (env.HF_HOME ? join(env.HF_HOME, 'hub') : join(homedir(), '.cache', 'huggingface', 'hub'));
  const snapshots = join(hub, `models--${repoId.replace('/', '--')}`, 'snapshots');
  if (!existsSync(snapshots)) return null;
  for (const s of readdirSync(snapshots).sort().reverse()) {
    const p = join(snapshots, s, 'model_index.json');
    if (existsSync(p)) return p;
  }
  return null;
}

/** The variant of `source`, or a message saying why it cannot be read. */
export function variantOf(source: string, env: Env = process.env): Variant | string {
  const tiny = TINY[source];
  if (tiny) return tiny;
  if (source.startsWith('tiny:')) return TINY_VARIANTS[source.slice(5)] ?? `unknown tiny variant "${source.slice(5)}" (known: ${Object.keys(TINY_VARIANTS).join(', ')})`;
  if (source === 'simulated' || source.startsWith('simulated:')) return 'distilled';
  const local = source.startsWith('/') || source.startsWith('.') || source.startsWith('~') || existsSync(source);
  const index = local ? join(source.startsWith('~') ? join(homedir(), source.slice(1)) : source, 'model_index.json') : /^[\w.-]+\/[\w.-]+$/.test(source) ? cachedIndex(source, env) : null;
  if (!local && !/^[\w.-]+\/[\w.-]+$/.test(source)) return `"${source}" is neither a tiny variant, a directory nor a hub id (owner/name)`;
  if (index && existsSync(index)) return variantOfIndex(index);
  const name = source.replace(/\/+$/, '').split('/').pop() ?? '';
  return /(^|[-_.])base([-_.]|$)/i.test(name) ? 'base' : 'distilled';
}

/** Parses KLEIN_MODELS; problems (one per bad entry, naming it) go to `problems`. */
export function parseServedModels(raw: string, env: Env, problems: string[]): ServedModels {
  const name = 'KLEIN_MODELS';
  const list: ServedModel[] = [];
  for (const entry of raw.split(',').map((x) => x.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=');
    const slug = eq > 0 ? entry.slice(0, eq).trim() : '';
    const source = eq > 0 ? entry.slice(eq + 1).trim() : '';
    if (!slug || !source) {
      problems.push(`${name}: each entry must be slug=model, got "${entry.slice(0, 200)}"`);
      continue;
    }
    if (!SLUG_PATTERN.test(slug)) {
      problems.push(`${name}: slug "${slug.slice(0, 100)}" must be 1 to 64 lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit`);
      continue;
    }
    if (RESERVED_SLUGS.includes(slug)) {
      problems.push(`${name}: "${slug}" names another route; choose another slug`);
      continue;
    }
    if (list.some((m) => m.slug === slug)) {
      problems.push(`${name}: "${slug}" is given more than once`);
      continue;
    }
    const variant = variantOf(source, env);
    if (variant !== 'distilled' && variant !== 'base') {
      problems.push(`${name}: ${slug}: ${variant}`);
      continue;
    }
    list.push({ slug, source, variant, defaults: VARIANT_DEFAULTS[variant] });
  }
  if (list.length === 0) {
    if (problems.length === 0) problems.push(`${name}: must name at least one model (slug=model), got "${raw.slice(0, 200)}"`);
    return new ServedModels([{ slug: 'flux-2-klein-4b', source: 'tiny', variant: 'distilled', defaults: VARIANT_DEFAULTS.distilled }]);
  }
  return new ServedModels(list);
}
