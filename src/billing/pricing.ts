/**
 * The price of a request, known before it runs, in integer micro-credits
 * (1 credit = 1,000,000 micro-credits; no floats touch money):
 *
 *   price = base + ceil(rate × megapixels × evaluations) + per_lora × adapters
 *   megapixels  = (width·height + reference pixels) / 1,000,000
 *   evaluations = steps × (cfg > 1 ? 2 : 1) × (sampler res_2s ? 2 : 1)
 *
 * Why these factors: the work is transformer evaluations, each over the output's tokens
 * plus every reference image's tokens (contract §5: references are appended as extra
 * tokens to every evaluation), so a reference costs its megapixels at every evaluation,
 * like output pixels. (Attention is quadratic in tokens; at ≤ 1 MP the linear layers
 * dominate, so linear pricing is close and, above all, predictable.) The reference
 * pixels are those after preprocessing (≤ 1024² each, contract §3); the caller passes them.
 *
 * Defaults: base 0.001 credits, rate 0.00076 credits per megapixel-evaluation. The seed
 * page's default request — 1024×1024 = 1.048576 MP, 20 steps × 2 (cfg 5) × 1 (euler) =
 * 40 evaluations — costs 0.001 + 0.00076 × 1.048576 × 40 = 0.001 + 0.03187671… →
 * 1000 + ceil(31876.71) = 32,877 micro-credits = 0.032877 credits, Segmind's "~$0.033".
 *
 * per_lora is a surcharge per LoRA adapter of the request (contract §7), default 0: an
 * adapter adds low-rank products to every evaluation (a few percent of its work) and, the
 * first time, a download the request is not billed for; an operator may still price it.
 *
 * Configure with KLEIN_PRICE_BASE, KLEIN_PRICE_PER_MP_EVAL and KLEIN_PRICE_PER_LORA, decimal credits with at
 * most 6 places, parsed exactly (parsePricing). Each served model (contract §6) may have its
 * own: KLEIN_PRICE_BASE_<SLUG> and KLEIN_PRICE_PER_MP_EVAL_<SLUG>, the slug upper-cased
 * with every other character than a letter or digit as `_` (flux-2-klein-9b →
 * KLEIN_PRICE_PER_MP_EVAL_FLUX_2_KLEIN_9B); a model without its own takes the global ones.
 * The formula is the same for every model: a larger model costs more per evaluation, which
 * its own rate says.
 */
import type { ResolvedParams } from '../contract/types.js';

export const MICRO = 1_000_000;

export interface PricingConfig {
  /** Micro-credits charged per request, whatever its size. */
  baseMicro: number;
  /** Micro-credits per megapixel-evaluation. */
  perMpEvalMicro: number;
  /** Micro-credits per LoRA adapter of the request. */
  perLoraMicro: number;
}

export const DEFAULT_PRICING: Readonly<PricingConfig> = Object.freeze({ baseMicro: 1000, perMpEvalMicro: 760, perLoraMicro: 0 });

/** How an amount of credits is written: a decimal number with at most 6 places. */
export const CREDITS_PATTERN = /^\s*(\d+)(?:\.(\d{1,6}))?\s*$/;

/** Exact decimal credits ("12.5", "0.000001") → integer micro-credits; null when malformed or beyond 2^53−1 micro-credits. */
export function creditsToMicro(s: string): number | null {
  const m = CREDITS_PATTERN.exec(s);
  if (!m) return null;
  const micro = BigInt(m[1]!) * BigInt(MICRO) + BigInt((m[2] ?? '').padEnd(6, '0'));
  return micro <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(micro) : null;
}

/** Integer micro-credits → the shortest exact decimal string ("0.032877", "10", "-1.5"). */
export function microToCredits(micro: number): string {
  const neg = micro < 0;
  const a = Math.abs(micro);
  const whole = Math.floor(a / MICRO);
  const frac = String(a % MICRO).padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

/** Transformer evaluations of a run: CFG batches two, res_2s takes two stages per step. */
export function evaluations(p: Pick<ResolvedParams, 'steps' | 'cfg' | 'sampler'>): number {
  return p.steps * (p.cfg > 1 ? 2 : 1) * (p.sampler === 'res_2s' ? 2 : 1);
}

/**
 * The price in micro-credits. `referencePixels`: the sum of width·height over the
 * reference images after preprocessing (0 for text-to-image).
 */
export function priceMicro(
  p: Pick<ResolvedParams, 'steps' | 'cfg' | 'sampler' | 'width' | 'height'> & { loras?: readonly unknown[] },
  cfg: PricingConfig,
  referencePixels = 0,
): number {
  const adapters = p.loras?.length ?? 0;
  const perLora = cfg.perLoraMicro;
  for (const [name, v] of [['width', p.width], ['height', p.height], ['steps', p.steps], ['referencePixels', referencePixels], ['baseMicro', cfg.baseMicro], ['perMpEvalMicro', cfg.perMpEvalMicro], ['perLoraMicro', perLora]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`price: ${name} must be a non-negative integer, got ${v}`);
  }
  // rate [µ/MP-eval] × pixels × evals / 10^6 [pixels/MP], rounded up, exactly.
  const num = BigInt(cfg.perMpEvalMicro) * BigInt(p.width * p.height + referencePixels) * BigInt(evaluations(p));
  const total = BigInt(cfg.baseMicro) + (num + BigInt(MICRO - 1)) / BigInt(MICRO) + BigInt(perLora) * BigInt(adapters);
  if (total > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`price ${total} micro-credits is beyond 2^53−1`);
  return Number(total);
}

export class PricingConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'PricingConfigError';
  }
}

/** The suffix of a model's own price variables: `flux-2-klein-9b` → `FLUX_2_KLEIN_9B`. */
export function priceEnvSuffix(slug: string): string {
  return slug.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** Each served model's price function by slug: its own variables, else the global ones, else the defaults. */
export function parseModelPricing(env: Record<string, string | undefined>, slugs: readonly string[]): Map<string, PricingConfig> {
  const problems: string[] = [];
  const global = collect(problems, () => parsePricing(env));
  const out = new Map<string, PricingConfig>();
  const bySuffix = new Map<string, string>();
  for (const slug of slugs) {
    const suffix = priceEnvSuffix(slug);
    const other = bySuffix.get(suffix);
    if (other) problems.push(`models ${other} and ${slug} would share the price variables KLEIN_PRICE_…_${suffix}: rename one`);
    bySuffix.set(suffix, slug);
    out.set(slug, collect(problems, () => parsePricing(env, `_${suffix}`, global)));
  }
  if (problems.length > 0) throw new PricingConfigError(problems);
  return out;
}

function collect(problems: string[], read: () => PricingConfig): PricingConfig {
  try {
    return read();
  } catch (err) {
    if (!(err instanceof PricingConfigError)) throw err;
    problems.push(...err.problems);
    return DEFAULT_PRICING;
  }
}

/**
 * Reads KLEIN_PRICE_BASE and KLEIN_PRICE_PER_MP_EVAL, each with `suffix` (a model's own),
 * unset or empty: `fallback`'s.
 */
export function parsePricing(env: Record<string, string | undefined>, suffix = '', fallback: PricingConfig = DEFAULT_PRICING): PricingConfig {
  const problems: string[] = [];
  const read = (name: string, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return fallback;
    const v = creditsToMicro(raw);
    if (v === null) {
      problems.push(`${name} must be a non-negative decimal number of credits with at most 6 decimal places (e.g. 0.00076), got ${JSON.stringify(raw)}`);
      return fallback;
    }
    return v;
  };
  const out = {
    baseMicro: read(`KLEIN_PRICE_BASE${suffix}`, fallback.baseMicro),
    perMpEvalMicro: read(`KLEIN_PRICE_PER_MP_EVAL${suffix}`, fallback.perMpEvalMicro),
    perLoraMicro: read(`KLEIN_PRICE_PER_LORA${suffix}`, fallback.perLoraMicro),
  };
  if (problems.length > 0) throw new PricingConfigError(problems);
  return out;
}
