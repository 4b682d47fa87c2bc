/**
 * The price of a request, known before it runs (issue: credits). In micro-credits:
 *
 *   price = base + rate × megapixels × evaluations,  rounded up to a whole micro-credit
 *   megapixels  = (output pixels + reference pixels) / 1,000,000  — tokens per evaluation
 *   evaluations = steps × (cfg > 1 ? 2 : 1) × (sampler res_2s ? 2 : 1)
 *
 * Defaults: base 0.001 credits, rate 0.00076 credits per megapixel-evaluation. Segmind's
 * default request (1024×1024, 20 steps, cfg 5, euler: 1.048576 MP × 40 evaluations) then
 * costs 0.001 + 0.00076 × 41.94 = 0.032877 credits, like the ~$0.033 on Segmind's page.
 * Configure with KLEIN_PRICE_BASE and KLEIN_PRICE_PER_MP_EVAL (decimal credits).
 */
import type { ResolvedParams } from './types.js';

export const MICRO = 1_000_000;

export interface PricingConfig {
  baseMicro: number;
  /** Micro-credits per megapixel-evaluation. */
  perMpEvalMicro: number;
}

export const DEFAULT_PRICING: PricingConfig = { baseMicro: 1000, perMpEvalMicro: 760 };

/** Exact decimal credits ("12.5", "0.000001") → integer micro-credits; null when malformed. */
export function creditsToMicro(s: string): number | null {
  const m = /^\s*(\d{1,12})(?:\.(\d{1,6}))?\s*$/.exec(s);
  if (!m) return null;
  const whole = Number(m[1]);
  const frac = Number((m[2] ?? '').padEnd(6, '0'));
  return whole * MICRO + frac;
}

/** Integer micro-credits → the shortest exact decimal string ("0.032877", "10"). */
export function microToCredits(micro: number): string {
  const neg = micro < 0;
  const a = Math.abs(micro);
  const whole = Math.floor(a / MICRO);
  const frac = String(a % MICRO).padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

export function evaluations(p: Pick<ResolvedParams, 'steps' | 'cfg' | 'sampler'>): number {
  return p.steps * (p.cfg > 1 ? 2 : 1) * (p.sampler === 'res_2s' ? 2 : 1);
}

export function priceMicro(
  p: Pick<ResolvedParams, 'steps' | 'cfg' | 'sampler' | 'width' | 'height'>,
  cfg: PricingConfig,
  referencePixels = 0,
): number {
  const pixels = BigInt(p.width * p.height + referencePixels);
  const num = BigInt(cfg.perMpEvalMicro) * pixels * BigInt(evaluations(p));
  const variable = (num + BigInt(MICRO - 1)) / BigInt(MICRO);
  return cfg.baseMicro + Number(variable);
}

export function parsePricing(env: Record<string, string | undefined>): PricingConfig {
  const problems: string[] = [];
  const read = (name: string, dflt: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return dflt;
    const v = creditsToMicro(raw);
    if (v === null) {
      problems.push(`${name}: must be a non-negative decimal number of credits with at most 6 places, got "${raw}"`);
      return dflt;
    }
    return v;
  };
  const out = {
    baseMicro: read('KLEIN_PRICE_BASE', DEFAULT_PRICING.baseMicro),
    perMpEvalMicro: read('KLEIN_PRICE_PER_MP_EVAL', DEFAULT_PRICING.perMpEvalMicro),
  };
  if (problems.length > 0) throw new PricingConfigError(problems);
  return out;
}

export class PricingConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
  }
}
