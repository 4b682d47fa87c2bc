import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ASPECT_RATIOS, sizeForRatio } from './aspect-ratios.js';
import { DEFAULT_PRICING, creditsToMicro, microToCredits, parsePricing, priceMicro } from './pricing.js';
import { DEFAULTS } from './request-schema.js';
import { resolveParams } from './resolve.js';
import { validateGenerateBody } from './validate.js';

const v = (b: unknown, allowWebhook = false) => validateGenerateBody(b, { allowWebhook });
const fields = (b: unknown) => {
  const r = v(b);
  return r.ok ? [] : r.details.map((d) => d.field);
};

// Contract §3, verbatim.
const TABLE: Record<string, [number, number, number]> = {
  '1:1': [1024, 1024, 0], '2:3': [832, 1248, 0], '3:2': [1248, 832, 0], '3:4': [880, 1184, 0.9], '4:3': [1184, 880, 0.91],
  '4:5': [912, 1136, 0.35], '5:4': [1136, 912, 0.35], '9:16': [768, 1360, 0.39], '16:9': [1360, 768, 0.39], '21:9': [1536, 656, 0.35], '9:21': [656, 1536, 0.35],
};

describe('aspect ratios', () => {
  it('the rule reproduces the contract table exactly, ratio error included', () => {
    for (const [name, [w, h, errPct]] of Object.entries(TABLE)) {
      assert.deepEqual(ASPECT_RATIOS[name as keyof typeof ASPECT_RATIOS], { width: w, height: h }, name);
      const [a, b] = name.split(':').map(Number) as [number, number];
      assert.ok(Math.abs((Math.abs(w / h - a / b) / (a / b)) * 100 - errPct) < 0.01, name);
    }
  });

  it('match_input_image: multiples of 16, within limits, for any ratio up to 8:1', () => {
    for (const r of [1, 4 / 3, 1.6667, 2, 3, 5, 8, 1 / 8, 0.3, 7.9]) {
      const s = sizeForRatio(r);
      assert.equal(s.width % 16, 0);
      assert.equal(s.height % 16, 0);
      assert.ok(s.width * s.height <= 1024 * 1024 && s.width >= 64 && s.height >= 64 && s.width <= 2048 && s.height <= 2048, `${r}`);
      assert.ok(Math.abs(s.width / s.height - r) / r < 0.1, `${r} → ${s.width}x${s.height}`);
    }
    assert.deepEqual(sizeForRatio(8), { width: 2048, height: 256 });
  });
});

describe('validation (contract §1)', () => {
  it('accepts the seed page request and applies every default', () => {
    const r = v({ prompt: 'a cat' });
    assert.ok(r.ok);
    const p = resolveParams(r.value, [], () => 0);
    assert.deepEqual(
      { n: p.negative_prompt, s: p.seed, c: p.cfg, sa: p.sampler, st: p.steps, a: p.aspect_ratio, g: p.go_fast, f: p.image_format, q: p.quality, w: p.width, h: p.height, b: p.base64, u: p.image_urls },
      { n: DEFAULTS.negative_prompt, s: 3425234, c: 5, sa: 'euler', st: 20, a: '1:1', g: true, f: 'png', q: 90, w: 1024, h: 1024, b: false, u: [] },
    );
  });

  it('accepts each boundary and refuses one past it, naming the field', () => {
    const edges: Array<[string, unknown, unknown]> = [
      ['steps', 1, 0], ['steps', 100, 101], ['cfg', 1, 0.99], ['cfg', 20, 20.01], ['quality', 10, 9], ['quality', 100, 101],
      ['seed', 0, -2], ['seed', 2 ** 53 - 1, 2 ** 53], ['seed', -1, 1.5],
    ];
    for (const [f, good, bad] of edges) {
      assert.ok(v({ prompt: 'x', [f]: good }).ok, `${f}=${good}`);
      assert.deepEqual(fields({ prompt: 'x', [f]: bad }), [f], `${f}=${bad}`);
    }
    assert.ok(v({ prompt: 'x'.repeat(10_000) }).ok);
    assert.deepEqual(fields({ prompt: 'x'.repeat(10_001) }), ['prompt']);
    assert.deepEqual(fields({ prompt: 'x', negative_prompt: 'n'.repeat(10_001) }), ['negative_prompt']);
    assert.deepEqual(fields({ prompt: '   ' }), ['prompt']);
    assert.deepEqual(fields({}), ['prompt']);
  });

  it('never coerces types', () => {
    const wrong: Record<string, unknown> = { prompt: 1, image_urls: 'x', negative_prompt: 2, seed: '1', cfg: '5', sampler: 1, steps: '20', aspect_ratio: 1, go_fast: 'true', image_format: true, quality: '90', base64: 1 };
    for (const [f, val] of Object.entries(wrong)) {
      assert.deepEqual(fields({ prompt: 'x', [f]: val }), [f], f);
    }
    assert.deepEqual(fields({ prompt: 'x', width: '512', height: 512 }), ['width']);
  });

  it('names unknown fields and lists the allowed ones', () => {
    const r = v({ prompt: 'x', guidance: 3, num_steps: 4 });
    assert.ok(!r.ok);
    assert.deepEqual(r.details.map((d) => d.field), ['guidance', 'num_steps']);
    assert.match(r.details[0]!.message, /allowed fields: prompt, image_urls/);
    assert.deepEqual(fields({ prompt: 'x', webhook_url: 'https://a.example/h' }), ['webhook_url']);
    assert.ok(v({ prompt: 'x', webhook_url: 'https://a.example/h' }, true).ok);
    assert.ok(!v({ prompt: 'x', webhook_url: 'ftp://a.example/h' }, true).ok);
  });

  it('enums, the jpg alias, sizes and image_urls', () => {
    for (const s of ['euler', 'res_2s']) assert.ok(v({ prompt: 'x', sampler: s }).ok);
    for (const f of ['png', 'jpeg', 'jpg', 'webp']) assert.ok(v({ prompt: 'x', image_format: f }).ok);
    const jpg = v({ prompt: 'x', image_format: 'jpg' });
    assert.ok(jpg.ok && resolveParams(jpg.value, [], () => 0).image_format === 'jpeg');
    for (const a of Object.keys(TABLE)) assert.ok(v({ prompt: 'x', aspect_ratio: a }).ok, a);
    assert.deepEqual(fields({ prompt: 'x', aspect_ratio: 'match_input_image' }), ['aspect_ratio']);
    assert.ok(v({ prompt: 'x', aspect_ratio: 'match_input_image', image_urls: ['https://a.example/x.png'] }).ok);
    assert.ok(v({ prompt: 'x', width: 64, height: 2048 }).ok);
    assert.ok(v({ prompt: 'x', width: 2048, height: 2048 }).ok, '2048² is exactly the 4,194,304-pixel cap');
    assert.deepEqual(fields({ prompt: 'x', width: 2064, height: 1024 }), ['width']);
    assert.deepEqual(fields({ prompt: 'x', width: 48, height: 1024 }), ['width']);
  });

  it('image_urls: 0 to 4, http(s) or data:image URIs', () => {
    assert.ok(v({ prompt: 'x', image_urls: ['https://a.example/1.png', 'http://b.example/2.jpg', 'data:image/webp;base64,AAAA', 'data:image/jpeg;base64,AAAA'] }).ok);
    assert.deepEqual(fields({ prompt: 'x', image_urls: ['a', 'b', 'c', 'd', 'e'] }), ['image_urls']);
    assert.deepEqual(fields({ prompt: 'x', image_urls: ['https://ok.example/x', 'file:///etc/passwd', 'data:image/gif;base64,AA', 5] }), ['image_urls[1]', 'image_urls[2]', 'image_urls[3]']);
  });

  it('never throws on 2,000 random values', () => {
    let s = 42;
    const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const vals = [null, true, 1, -1, 1.5, 'x', '', [], {}, [1, 'a'], { a: 1 }, Number.NaN, 1e309, 'match_input_image', 'jpg'];
    const keys = ['prompt', 'steps', 'cfg', 'seed', 'image_urls', 'width', 'height', 'aspect_ratio', 'x', '__proto__', 'constructor'];
    for (let i = 0; i < 2000; i++) {
      const body: Record<string, unknown> = {};
      for (let k = 0; k < 4; k++) body[keys[Math.floor(rnd() * keys.length)]!] = vals[Math.floor(rnd() * vals.length)];
      const r = rnd() < 0.1 ? v(vals[Math.floor(rnd() * vals.length)]) : v(body);
      assert.ok(r.ok === true || r.details.length > 0);
    }
  });
});

describe('pricing', () => {
  const base = { width: 1024, height: 1024, steps: 20, cfg: 5, sampler: 'euler' as const };
  it('the seed page default request costs about 0.033 credits', () => {
    assert.equal(microToCredits(priceMicro(base, DEFAULT_PRICING)), '0.032877');
  });
  it('grows with pixels, steps, CFG, res_2s and references; integer micro-credits', () => {
    const p0 = priceMicro(base, DEFAULT_PRICING);
    assert.ok(priceMicro({ ...base, steps: 21 }, DEFAULT_PRICING) > p0);
    assert.ok(priceMicro({ ...base, cfg: 1 }, DEFAULT_PRICING) < p0);
    assert.ok(priceMicro({ ...base, sampler: 'res_2s' }, DEFAULT_PRICING) > p0);
    assert.ok(priceMicro({ ...base, width: 512 }, DEFAULT_PRICING) < p0);
    assert.ok(priceMicro(base, DEFAULT_PRICING, 1024 * 1024) > p0);
    assert.ok(Number.isSafeInteger(priceMicro({ ...base, width: 2048, height: 2048, steps: 100, sampler: 'res_2s' }, DEFAULT_PRICING)));
  });
  it('parses decimal credits exactly and names a bad variable', () => {
    assert.equal(creditsToMicro('0.1'), 100_000);
    assert.equal(creditsToMicro('12.000001'), 12_000_001);
    assert.equal(creditsToMicro('1e3'), null);
    assert.equal(microToCredits(1_500_000), '1.5');
    assert.deepEqual(parsePricing({ KLEIN_PRICE_BASE: '0', KLEIN_PRICE_PER_MP_EVAL: '0.001' }), { baseMicro: 0, perMpEvalMicro: 1000 });
    assert.throws(() => parsePricing({ KLEIN_PRICE_BASE: '-1' }), /KLEIN_PRICE_BASE/);
  });
});
