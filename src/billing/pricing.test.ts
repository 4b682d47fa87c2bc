import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_PRICING,
  PricingConfigError,
  creditsToMicro,
  evaluations,
  microToCredits,
  parseModelPricing,
  parsePricing,
  priceEnvSuffix,
  priceMicro,
  type PricingConfig,
} from './pricing.js';

type Job = { width: number; height: number; steps: number; cfg: number; sampler: 'euler' | 'res_2s' };
const seedPage: Job = { width: 1024, height: 1024, steps: 20, cfg: 5, sampler: 'euler' };
const price = (p: Partial<Job> = {}, refs = 0, cfg: PricingConfig = DEFAULT_PRICING) =>
  priceMicro({ ...seedPage, ...p }, cfg, refs);

describe('pricing', () => {
  it("the seed page's default request costs 0.032877 credits (Segmind: ~$0.033)", () => {
    // 1000 + ceil(760 × 1.048576 MP × 40 evaluations) = 1000 + ceil(31876.71) = 32877
    assert.equal(price(), 32_877);
    assert.equal(microToCredits(price()), '0.032877');
  });

  it('counts evaluations: ×2 for cfg > 1, ×2 for res_2s', () => {
    assert.equal(evaluations({ steps: 20, cfg: 5, sampler: 'euler' }), 40);
    assert.equal(evaluations({ steps: 20, cfg: 1, sampler: 'euler' }), 20);
    assert.equal(evaluations({ steps: 20, cfg: 1.01, sampler: 'euler' }), 40);
    assert.equal(evaluations({ steps: 20, cfg: 5, sampler: 'res_2s' }), 80);
    assert.equal(evaluations({ steps: 4, cfg: 1, sampler: 'res_2s' }), 8);
  });

  it('is exact: base + ceil(rate × pixels × evaluations / 10^6)', () => {
    const cfg = { baseMicro: 7, perMpEvalMicro: 3, perLoraMicro: 0 };
    // 64×64 = 4096 pixels, 1 evaluation: 3 × 4096 / 10^6 = 0.012288 → 1
    assert.equal(priceMicro({ width: 64, height: 64, steps: 1, cfg: 1, sampler: 'euler' }, cfg), 8);
    // 1,000,000 pixels exactly (1000 is not a multiple of 16, but pricing does not care): no rounding
    assert.equal(priceMicro({ width: 1000, height: 1000, steps: 1, cfg: 1, sampler: 'euler' }, cfg), 10);
    assert.equal(priceMicro({ width: 1000, height: 1000, steps: 1, cfg: 1, sampler: 'euler' }, cfg, 1), 11);
    assert.equal(priceMicro({ width: 64, height: 64, steps: 1, cfg: 1, sampler: 'euler' }, { baseMicro: 0, perMpEvalMicro: 0, perLoraMicro: 0 }), 0);
  });

  it('grows with every factor and is always an integer', () => {
    const steps = [1, 4, 20, 50, 100].map((s) => price({ steps: s }));
    const sides = [64, 256, 512, 1024, 2048].map((w) => price({ width: w, height: w }));
    const widths = [512, 1024, 2048].map((w) => price({ width: w }));
    const refs = [0, 64 * 64, 512 * 512, 1024 * 1024, 4 * 1024 * 1024].map((r) => price({}, r));
    const cfgs = [1, 1.5, 20].map((c) => price({ cfg: c }));
    const bases = [0, 1, 1000, 10_000].map((b) => price({}, 0, { ...DEFAULT_PRICING, baseMicro: b }));
    const rates = [0, 1, 760, 10_000].map((r) => price({}, 0, { ...DEFAULT_PRICING, perMpEvalMicro: r }));
    for (const series of [steps, sides, widths, refs, bases, rates]) {
      for (let i = 1; i < series.length; i++) assert.ok(series[i]! > series[i - 1]!, JSON.stringify(series));
    }
    assert.ok(cfgs[0]! < cfgs[1]! && cfgs[1] === cfgs[2], 'cfg only matters as > 1');
    assert.ok(price({ sampler: 'res_2s' }) > price());
    assert.equal(price({ sampler: 'res_2s', cfg: 1 }), price({ sampler: 'euler', cfg: 5 }));
    for (const p of [...steps, ...sides, ...widths, ...refs, ...cfgs, ...bases, ...rates]) assert.ok(Number.isSafeInteger(p));
    const biggest = price({ width: 2048, height: 2048, steps: 100, sampler: 'res_2s' }, 4 * 1024 * 1024);
    assert.ok(Number.isSafeInteger(biggest));
    // 1000 + ceil(760 × (4,194,304 + 4,194,304) × 400 / 10^6) = 1000 + ceil(2,550,136.832)
    assert.equal(biggest, 2_551_137);
  });

  it('refuses nonsense inputs instead of pricing them', () => {
    assert.throws(() => price({ steps: 1.5 }), RangeError);
    assert.throws(() => price({}, -1), RangeError);
    assert.throws(() => price({}, 0, { baseMicro: 0.5, perMpEvalMicro: 760, perLoraMicro: 0 }), /baseMicro/);
    assert.throws(() => price({}, 0, { baseMicro: 0, perMpEvalMicro: Number.MAX_SAFE_INTEGER, perLoraMicro: 0 }), /beyond/);
  });
});

describe('credits as exact decimals', () => {
  it('parses decimal credits exactly (no float drift)', () => {
    assert.equal(creditsToMicro('0.1'), 100_000);
    assert.equal(creditsToMicro('0.3'), 300_000); // 0.1 + 0.2 territory
    assert.equal(creditsToMicro('12.000001'), 12_000_001);
    assert.equal(creditsToMicro('0.00076'), 760);
    assert.equal(creditsToMicro(' 10 '), 10_000_000);
    assert.equal(creditsToMicro('9007199254.740991'), Number.MAX_SAFE_INTEGER);
    for (const bad of ['', '-1', '1e3', '0.0000001', '1.', '.5', 'abc', '1,5', '0x10', 'Infinity', '9007199254.740992', '999999999999']) {
      assert.equal(creditsToMicro(bad), null, bad);
    }
  });

  it('prints micro-credits as the shortest exact decimal', () => {
    assert.equal(microToCredits(1_500_000), '1.5');
    assert.equal(microToCredits(32_877), '0.032877');
    assert.equal(microToCredits(10_000_000), '10');
    assert.equal(microToCredits(0), '0');
    assert.equal(microToCredits(-1), '-0.000001');
    for (const m of [1, 999_999, 123_456_789, Number.MAX_SAFE_INTEGER]) assert.equal(creditsToMicro(microToCredits(m)), m);
  });
});

describe('parsePricing', () => {
  it('defaults when unset or empty; reads both variables', () => {
    assert.deepEqual(parsePricing({}), { baseMicro: 1000, perMpEvalMicro: 760, perLoraMicro: 0 });
    assert.deepEqual(parsePricing({ KLEIN_PRICE_BASE: '', KLEIN_PRICE_PER_MP_EVAL: ' ' }), { baseMicro: 1000, perMpEvalMicro: 760, perLoraMicro: 0 });
    assert.deepEqual(parsePricing({ KLEIN_PRICE_BASE: '0', KLEIN_PRICE_PER_MP_EVAL: '0.001' }), { baseMicro: 0, perMpEvalMicro: 1000, perLoraMicro: 0 });
  });

  it('names the bad variable and the value', () => {
    assert.throws(() => parsePricing({ KLEIN_PRICE_BASE: '-1' }), (e: unknown) => {
      assert.ok(e instanceof PricingConfigError);
      assert.equal(e.problems.length, 1);
      assert.match(e.message, /^KLEIN_PRICE_BASE must be a non-negative decimal number of credits .*got "-1"$/);
      return true;
    });
    assert.throws(() => parsePricing({ KLEIN_PRICE_PER_MP_EVAL: '0.0000001' }), /KLEIN_PRICE_PER_MP_EVAL/);
    assert.throws(() => parsePricing({ KLEIN_PRICE_BASE: 'x', KLEIN_PRICE_PER_MP_EVAL: '1e-3' }), (e: unknown) => {
      assert.ok(e instanceof PricingConfigError);
      assert.deepEqual(e.problems.map((p) => p.split(' ')[0]), ['KLEIN_PRICE_BASE', 'KLEIN_PRICE_PER_MP_EVAL']);
      return true;
    });
  });
});

describe('parseModelPricing', () => {
  const slugs = ['flux-2-klein-4b', 'flux-2-klein-9b'];
  it("gives each served model its own variables, else the global ones, else the defaults", () => {
    assert.equal(priceEnvSuffix('flux-2-klein-9b'), 'FLUX_2_KLEIN_9B');
    assert.equal(priceEnvSuffix('my.model_v2'), 'MY_MODEL_V2');
    const byDefault = parseModelPricing({}, slugs);
    assert.deepEqual([...byDefault.values()], [DEFAULT_PRICING, DEFAULT_PRICING]);
    const p = parseModelPricing({ KLEIN_PRICE_BASE: '0.002', KLEIN_PRICE_PER_MP_EVAL_FLUX_2_KLEIN_9B: '0.0017' }, slugs);
    assert.deepEqual(p.get('flux-2-klein-4b'), { baseMicro: 2000, perMpEvalMicro: 760, perLoraMicro: 0 });
    assert.deepEqual(p.get('flux-2-klein-9b'), { baseMicro: 2000, perMpEvalMicro: 1700, perLoraMicro: 0 });
    // The seed page's request on the 9B at its own rate: 0.002 + 0.0017 × 1.048576 × 40.
    assert.equal(priceMicro(seedPage, p.get('flux-2-klein-9b')!, 0), 2000 + Math.ceil(1700 * 1.048576 * 40));
  });

  it("names a model's bad variable, and two slugs that would share variables", () => {
    assert.throws(() => parseModelPricing({ KLEIN_PRICE_BASE_FLUX_2_KLEIN_9B: 'free' }, slugs), (e: unknown) => {
      assert.ok(e instanceof PricingConfigError);
      assert.match(e.problems[0]!, /^KLEIN_PRICE_BASE_FLUX_2_KLEIN_9B must be/);
      return true;
    });
    assert.throws(() => parseModelPricing({}, ['a-b', 'a.b']), /models a-b and a\.b would share the price variables KLEIN_PRICE_…_A_B/);
  });
});

describe('the LoRA surcharge', () => {
  it('adds per_lora × adapters, read from KLEIN_PRICE_PER_LORA (default 0) and per model', () => {
    const loras = [{}, {}];
    assert.equal(price({}, 0), price({ loras } as Partial<Job>, 0), 'free by default');
    const p = parseModelPricing({ KLEIN_PRICE_PER_LORA: '0.002', KLEIN_PRICE_PER_LORA_FLUX_2_KLEIN_9B: '0.005' }, ['flux-2-klein-4b', 'flux-2-klein-9b']);
    assert.equal(priceMicro({ ...seedPage, loras }, p.get('flux-2-klein-4b')!, 0), price() + 2 * 2000);
    assert.equal(priceMicro({ ...seedPage, loras: [{}] }, p.get('flux-2-klein-9b')!, 0), price() + 5000);
    assert.throws(() => parsePricing({ KLEIN_PRICE_PER_LORA: '-0.1' }), /KLEIN_PRICE_PER_LORA must be/);
  });
});
