import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULTS } from './request-schema.js';
import { needsReferenceSize, randomSeed, resolveParams } from './resolve.js';
import { validateGenerateBody } from './validate.js';

const input = (body: Record<string, unknown>) => {
  const r = validateGenerateBody(body, { allowWebhook: false });
  if (!r.ok) throw new Error(JSON.stringify(r.details));
  return r.value;
};
const never = () => {
  throw new Error('random drawn for a fixed seed');
};

describe('resolveParams (contract §1, §3)', () => {
  it('applies every default of contract §1', () => {
    const p = resolveParams(input({ prompt: 'a cat' }), [], never);
    assert.deepEqual(p, {
      prompt: 'a cat',
      negative_prompt: 'low quality, blurry, less details',
      seed: 3425234,
      cfg: 5,
      sampler: 'euler',
      steps: 20,
      aspect_ratio: '1:1',
      width: 1024,
      height: 1024,
      go_fast: true,
      image_format: 'png',
      quality: 90,
      image_urls: [],
      base64: false,
      loras: [],
    });
    assert.deepEqual(DEFAULTS, {
      image_urls: [], negative_prompt: 'low quality, blurry, less details', seed: 3425234, cfg: 5, sampler: 'euler',
      steps: 20, aspect_ratio: '1:1', go_fast: true, image_format: 'png', quality: 90, base64: false,
    });
  });

  it('keeps every given value', () => {
    const body = {
      prompt: 'p', image_urls: ['https://a.example/x.png'], negative_prompt: '', seed: 0, cfg: 1, sampler: 'res_2s', steps: 4,
      aspect_ratio: '9:16', go_fast: false, image_format: 'webp', quality: 10, base64: true,
    };
    const p = resolveParams(input(body), [{ width: 10, height: 10 }], never);
    assert.deepEqual(p, { ...body, width: 768, height: 1360, loras: [] });
  });

  it('keeps each LoRA as given, with the default scale 1 where none is given', () => {
    const loras = [{ path: 'https://a.example/l.safetensors', scale: 0.5 }, { path: 'owner/repo', weight_name: 'w.safetensors' }];
    assert.deepEqual(resolveParams(input({ prompt: 'x', loras }), [], never).loras, [loras[0], { ...loras[1], scale: 1 }]);
  });

  it('jpg resolves to jpeg; jpeg and webp stay', () => {
    assert.equal(resolveParams(input({ prompt: 'x', image_format: 'jpg' }), [], never).image_format, 'jpeg');
    assert.equal(resolveParams(input({ prompt: 'x', image_format: 'jpeg' }), [], never).image_format, 'jpeg');
    assert.equal(resolveParams(input({ prompt: 'x', image_format: 'webp' }), [], never).image_format, 'webp');
  });

  it('seed -1 draws a seed; the drawn seed must be an integer in 0…2^53−1', () => {
    assert.equal(resolveParams(input({ prompt: 'x', seed: -1 }), [], () => 42).seed, 42);
    assert.equal(resolveParams(input({ prompt: 'x', seed: -1 }), [], () => 2 ** 53 - 1).seed, 2 ** 53 - 1);
    for (const bad of [-1, 0.5, 2 ** 53, Number.NaN]) {
      assert.throws(() => resolveParams(input({ prompt: 'x', seed: -1 }), [], () => bad), RangeError, String(bad));
    }
    const seeds = new Set(Array.from({ length: 50 }, () => resolveParams(input({ prompt: 'x', seed: -1 }), []).seed));
    assert.ok(seeds.size > 45, 'the default draws from the CSPRNG');
    for (const s of seeds) assert.ok(Number.isSafeInteger(s) && s >= 0);
  });

  it('randomSeed covers 53 bits', () => {
    let max = 0;
    for (let i = 0; i < 200; i++) max = Math.max(max, randomSeed());
    assert.ok(max > 2 ** 52, `max ${max}`); // P(fail) = 2^-200
    assert.ok(max <= 2 ** 53 - 1);
  });

  it('size: explicit width/height, else the table, else the first reference', () => {
    const s = (body: Record<string, unknown>, refs: Array<{ width: number; height: number }> = []) => {
      const p = resolveParams(input({ prompt: 'x', ...body }), refs, never);
      return [p.width, p.height];
    };
    assert.deepEqual(s({ aspect_ratio: '21:9' }), [1536, 656]);
    assert.deepEqual(s({ aspect_ratio: '4:3' }), [1184, 880]);
    assert.deepEqual(s({ width: 512, height: 768, aspect_ratio: '21:9' }), [512, 768]);
    const url = { image_urls: ['https://a.example/1.png', 'https://a.example/2.png'], aspect_ratio: 'match_input_image' };
    assert.deepEqual(s(url, [{ width: 1920, height: 1080 }, { width: 100, height: 900 }]), [1360, 768]);
    assert.deepEqual(s(url, [{ width: 100, height: 800 }]), [256, 2048]); // 1:8
    assert.deepEqual(s(url, [{ width: 800, height: 100 }]), [2048, 256]); // 8:1
    assert.deepEqual(s(url, [{ width: 3024, height: 4032 }]), [880, 1184]);
    assert.deepEqual(s({ ...url, width: 640, height: 640 }, [{ width: 800, height: 100 }]), [640, 640]);
    assert.throws(() => resolveParams({ prompt: 'x', aspect_ratio: 'match_input_image' }, [], never), /reference image/);
  });

  it('needsReferenceSize: only match_input_image without an explicit size', () => {
    const urls = ['https://a.example/x.png'];
    assert.equal(needsReferenceSize(input({ prompt: 'x', image_urls: urls, aspect_ratio: 'match_input_image' })), true);
    assert.equal(needsReferenceSize(input({ prompt: 'x', image_urls: urls, aspect_ratio: 'match_input_image', width: 512, height: 512 })), false);
    assert.equal(needsReferenceSize(input({ prompt: 'x', image_urls: urls })), false);
    assert.equal(needsReferenceSize(input({ prompt: 'x', image_urls: urls, aspect_ratio: '3:2' })), false);
  });

  it('does not share the image_urls array with the input', () => {
    const i = input({ prompt: 'x', image_urls: ['https://a.example/x.png'] });
    const p = resolveParams(i, [], never);
    p.image_urls.push('https://b.example/y.png');
    assert.equal(i.image_urls!.length, 1);
    const q = resolveParams(input({ prompt: 'x' }), [], never);
    q.image_urls.push('https://b.example/y.png');
    assert.deepEqual(DEFAULTS.image_urls, []);
  });
});
