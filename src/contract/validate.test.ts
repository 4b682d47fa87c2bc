import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Compile from 'typebox/compile';
import { AsyncBody, GenerateBody, MAX_PIXELS } from './request-schema.js';
import { validateGenerateBody } from './validate.js';

const v = (b: unknown, allowWebhook = false) => validateGenerateBody(b, { allowWebhook });
const details = (b: unknown, allowWebhook = false) => {
  const r = v(b, allowWebhook);
  return r.ok ? [] : r.details;
};
const fields = (b: unknown, allowWebhook = false) => details(b, allowWebhook).map((d) => d.field);
const message = (b: unknown, field: string) => details(b).find((d) => d.field === field)?.message;
const ok = (b: unknown, allowWebhook = false) => {
  const r = v(b, allowWebhook);
  assert.ok(r.ok, `${JSON.stringify(b).slice(0, 120)} refused: ${r.ok ? '' : JSON.stringify(r.details)}`);
};

const SCHEMA_ORDER = ['prompt', 'image_urls', 'negative_prompt', 'seed', 'cfg', 'sampler', 'steps', 'aspect_ratio', 'go_fast', 'image_format', 'quality', 'width', 'height', 'base64', 'loras'];

describe('validateGenerateBody (contract §1)', () => {
  it('accepts the seed page body exactly as Segmind documents it', () => {
    const seedPage = {
      prompt: "A humanoid figure with a vintage television for a head, its green screen displaying 'FLUX.2 Klein on Segmind' in ASCII text.",
      image_urls: [], negative_prompt: 'low quality, blurry, less details', seed: 3425234, cfg: 5, sampler: 'euler',
      steps: 20, aspect_ratio: '1:1', go_fast: true, image_format: 'png', quality: 90,
    };
    const r = v(seedPage);
    assert.ok(r.ok);
    assert.deepEqual(r.value, seedPage);
  });

  it('accepts each range boundary and refuses one past it, naming only that field', () => {
    const edges: Array<[string, unknown[], unknown[]]> = [
      ['steps', [1, 100], [0, 101, 20.5]],
      ['cfg', [1, 20, 1.5, 7.25], [0.99, 20.01, 0, -5]],
      ['quality', [10, 100], [9, 101, 90.5]],
      ['seed', [0, -1, 1, 2 ** 53 - 1], [-2, 2 ** 53, 1.5, -1.5]],
    ];
    for (const [f, good, bad] of edges) {
      for (const g of good) ok({ prompt: 'x', [f]: g });
      for (const b of bad) assert.deepEqual(fields({ prompt: 'x', [f]: b }), [f], `${f}=${b}`);
    }
    ok({ prompt: 'x'.repeat(10_000) });
    assert.deepEqual(fields({ prompt: 'x'.repeat(10_001) }), ['prompt']);
    ok({ prompt: 'x', negative_prompt: 'n'.repeat(10_000) });
    ok({ prompt: 'x', negative_prompt: '' });
    assert.deepEqual(fields({ prompt: 'x', negative_prompt: 'n'.repeat(10_001) }), ['negative_prompt']);
  });

  it('says what is wrong with the value, one message per field', () => {
    assert.equal(message({ prompt: 'x', steps: 101 }, 'steps'), 'must be an integer from 1 to 100, got 101');
    assert.equal(message({ prompt: 'x', steps: 20.5 }, 'steps'), 'must be an integer from 1 to 100, got 20.5');
    assert.equal(message({ prompt: 'x', cfg: 21 }, 'cfg'), 'must be a number from 1 to 20, got 21');
    assert.equal(message({ prompt: 'x', seed: -2 }, 'seed'), 'must be an integer from 0 to 9007199254740991, or -1 for a random seed, got -2');
    assert.equal(message({ prompt: '  \n\t' }, 'prompt'), 'must not be empty');
    assert.equal(message({ prompt: '' }, 'prompt'), 'must not be empty');
    assert.equal(message({}, 'prompt'), 'is required');
    assert.equal(message({ prompt: 'x'.repeat(10_001) }, 'prompt'), 'must be at most 10000 characters, got 10001');
    assert.equal(message({ prompt: 'x', sampler: 'ddim' }, 'sampler'), 'must be one of euler or res_2s, got "ddim"');
    assert.equal(message({ prompt: 'x', image_format: 'gif' }, 'image_format'), 'must be one of png, jpeg, webp or jpg, got "gif"');
    assert.equal(
      message({ prompt: 'x', aspect_ratio: '7:3' }, 'aspect_ratio'),
      'must be one of 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9, 9:21 or match_input_image, got "7:3"',
    );
    assert.equal(message({ prompt: 'x', width: 100, height: 512 }, 'width'), 'must be a multiple of 16 from 64 to 2048, got 100');
    assert.equal(message({ prompt: 'x', go_fast: 'yes' }, 'go_fast'), 'must be true or false, got "yes"');
    // A bad width does not also earn a pixel-cap message: one message per field.
    assert.deepEqual(details({ prompt: 'x', width: 4096, height: 2048 }), [{ field: 'width', message: 'must be a multiple of 16 from 64 to 2048, got 4096' }]);
    assert.deepEqual(fields({ prompt: 'x', width: 4096, height: 4096 }), ['width', 'height']);
  });

  it('counts characters as code points, as the JSON Schema maxLength of the route does', () => {
    ok({ prompt: '😀'.repeat(10_000) });
    assert.deepEqual(fields({ prompt: '😀'.repeat(10_001) }), ['prompt']);
  });

  it('never coerces: a value of the wrong JSON type is refused for every field', () => {
    const wrong: Record<string, unknown[]> = {
      prompt: [1, true, null, ['x'], { text: 'x' }],
      image_urls: ['https://a.example/x.png', null, { 0: 'x' }],
      negative_prompt: [0, false, null, ['x']],
      seed: ['1', '3425234', true, null, [1]],
      cfg: ['5', true, null, [5]],
      sampler: [0, true, null, ['euler']],
      steps: ['20', true, null, [20], 20.5],
      aspect_ratio: [1, 1.5, null, ['1:1']],
      go_fast: ['true', 1, 0, null, 'false'],
      image_format: [true, 1, null, ['png']],
      quality: ['90', true, null, 90.5],
      base64: ['true', 1, null],
    };
    for (const [f, values] of Object.entries(wrong)) {
      for (const val of values) assert.deepEqual(fields({ prompt: 'x', [f]: val }), [f], `${f}=${JSON.stringify(val)}`);
    }
    for (const val of ['512', 512.5, true, null]) {
      assert.deepEqual(fields({ prompt: 'x', width: val, height: 512 }), ['width'], `width=${JSON.stringify(val)}`);
      assert.deepEqual(fields({ prompt: 'x', width: 512, height: val }), ['height'], `height=${JSON.stringify(val)}`);
    }
    for (const val of [1, true, null, ['https://a.example/h']]) {
      assert.deepEqual(fields({ prompt: 'x', webhook_url: val }, true), ['webhook_url'], `webhook_url=${JSON.stringify(val)}`);
    }
    assert.deepEqual(fields({ prompt: 'x', image_urls: [1, 'https://a.example/x.png', null] }), ['image_urls[0]', 'image_urls[2]']);
  });

  it('refuses a body that is not a JSON object', () => {
    for (const b of [null, [], [{ prompt: 'x' }], 'prompt', 1, true, undefined]) {
      assert.deepEqual(fields(b), ['body'], JSON.stringify(b));
    }
  });

  it('names every unknown field and lists the allowed ones', () => {
    const d = details({ prompt: 'x', guidance: 3, num_steps: 4 });
    assert.deepEqual(d.map((x) => x.field), ['guidance', 'num_steps']);
    for (const x of d) assert.equal(x.message, `is not a known field; allowed fields: ${SCHEMA_ORDER.join(', ')}`);
    assert.deepEqual(fields(JSON.parse('{"prompt":"x","__proto__":{"steps":1}}')), ['__proto__']);
    // An inherited prompt is not the body's own.
    assert.deepEqual(fields(Object.create({ prompt: 'x' })), ['prompt']);
  });

  it('lists fields in schema order, unknown fields last', () => {
    const body = { zzz: 1, loras: 'none', base64: 'no', height: 'x', width: 1, quality: 1, image_format: 1, go_fast: 1, aspect_ratio: 1, steps: 0, sampler: 1, cfg: 0, seed: 'x', negative_prompt: 1, image_urls: 1, prompt: 1 };
    assert.deepEqual(fields(body), [...SCHEMA_ORDER, 'zzz']);
    assert.deepEqual(fields({ steps: 0, image_urls: ['ftp://a', 'x'] }), ['prompt', 'image_urls[0]', 'image_urls[1]', 'steps']);
  });

  it('enums and the jpg alias', () => {
    for (const s of ['euler', 'res_2s']) ok({ prompt: 'x', sampler: s });
    for (const f of ['png', 'jpeg', 'jpg', 'webp']) ok({ prompt: 'x', image_format: f });
    for (const f of ['PNG', 'JPG', 'jpe', 'tiff']) assert.deepEqual(fields({ prompt: 'x', image_format: f }), ['image_format']);
    for (const a of ['1:1', '2:3', '3:2', '3:4', '4:3', '4:5', '5:4', '9:16', '16:9', '21:9', '9:21']) ok({ prompt: 'x', aspect_ratio: a });
    for (const a of ['1:2', '1024x1024', 'auto', '']) assert.deepEqual(fields({ prompt: 'x', aspect_ratio: a }), ['aspect_ratio']);
  });

  it('match_input_image needs at least one image_url', () => {
    assert.deepEqual(details({ prompt: 'x', aspect_ratio: 'match_input_image' }), [
      { field: 'aspect_ratio', message: 'match_input_image needs at least one entry in image_urls' },
    ]);
    assert.deepEqual(fields({ prompt: 'x', aspect_ratio: 'match_input_image', image_urls: [] }), ['aspect_ratio']);
    assert.deepEqual(fields({ prompt: 'x', aspect_ratio: 'match_input_image', width: 512, height: 512 }), ['aspect_ratio']);
    ok({ prompt: 'x', aspect_ratio: 'match_input_image', image_urls: ['https://a.example/x.png'] });
    // A broken image_urls is reported once, on image_urls, not again on aspect_ratio.
    assert.deepEqual(fields({ prompt: 'x', aspect_ratio: 'match_input_image', image_urls: 'https://a.example/x.png' }), ['image_urls']);
  });

  it('width and height: both or neither, multiples of 16, 64…2048, pixel cap', () => {
    ok({ prompt: 'x', width: 64, height: 64 });
    ok({ prompt: 'x', width: 64, height: 2048 });
    ok({ prompt: 'x', width: 2048, height: 2048 }); // exactly the cap
    assert.equal(2048 * 2048, MAX_PIXELS, 'the side limit implies the pixel cap');
    assert.deepEqual(details({ prompt: 'x', width: 512 }), [{ field: 'height', message: 'is required when width is given' }]);
    assert.deepEqual(details({ prompt: 'x', height: 512 }), [{ field: 'width', message: 'is required when height is given' }]);
    for (const bad of [48, 2064, 520, 0, -64]) {
      assert.deepEqual(fields({ prompt: 'x', width: bad, height: 512 }), ['width'], `width ${bad}`);
      assert.deepEqual(fields({ prompt: 'x', width: 512, height: bad }), ['height'], `height ${bad}`);
    }
    ok({ prompt: 'x', width: 1024, height: 1024, aspect_ratio: '16:9' });
  });

  it('image_urls: 0 to 4 entries, http(s) or data:image URIs', () => {
    ok({ prompt: 'x', image_urls: [] });
    ok({ prompt: 'x', image_urls: ['https://a.example/1.png', 'http://b.example:8080/2.jpg?x=1', 'data:image/webp;base64,AAAA', 'data:image/jpeg;base64,AAAA'] });
    ok({ prompt: 'x', image_urls: ['data:image/png;base64,iVBORw0KGgo='] });
    assert.deepEqual(details({ prompt: 'x', image_urls: ['a', 'b', 'c', 'd', 'e'] }), [{ field: 'image_urls', message: 'must have at most 4 entries, got 5' }]);
    const bad = ['file:///etc/passwd', 'ftp://a.example/x', 'data:image/gif;base64,AA', 'data:text/plain;base64,AA', 'https://', 'https:foo', '//a.example/x', 'a.example/x.png', '', 'javascript:alert(1)', 'https://exa mple.com/'];
    const d = details({ prompt: 'x', image_urls: bad.slice(0, 4) });
    assert.deepEqual(d.map((x) => x.field), ['image_urls[0]', 'image_urls[1]', 'image_urls[2]', 'image_urls[3]']);
    assert.equal(d[0]!.message, 'must be an https://, http:// or data:image/(png|jpeg|webp);base64, URL');
    for (const u of bad) assert.deepEqual(fields({ prompt: 'x', image_urls: [u] }), ['image_urls[0]'], u);
    assert.deepEqual(details({ prompt: 'x', image_urls: ['data:image/png;base64,'] }), [{ field: 'image_urls[0]', message: 'must not be an empty data: URI' }]);
  });

  it('webhook_url only on v2, an http(s) URL of at most 2048 characters', () => {
    assert.deepEqual(fields({ prompt: 'x', webhook_url: 'https://a.example/h' }), ['webhook_url']);
    assert.match(message({ prompt: 'x', webhook_url: 'https://a.example/h' }, 'webhook_url')!, /not a known field; allowed fields: prompt, .*, base64, loras$/);
    ok({ prompt: 'x', webhook_url: 'https://a.example/h' }, true);
    ok({ prompt: 'x', webhook_url: 'http://a.example:9000/hook?id=1' }, true);
    const long = `https://a.example/${'h'.repeat(2048 - 'https://a.example/'.length)}`;
    ok({ prompt: 'x', webhook_url: long }, true);
    assert.deepEqual(details({ prompt: 'x', webhook_url: `${long}h` }, true), [{ field: 'webhook_url', message: 'must be at most 2048 characters, got 2049' }]);
    for (const u of ['ftp://a.example/h', 'data:image/png;base64,AA', 'https://', 'a.example/h', '']) {
      assert.deepEqual(details({ prompt: 'x', webhook_url: u }, true), [{ field: 'webhook_url', message: 'must be an http:// or https:// URL' }], u);
    }
  });

  it('a hostile body costs what a small one does: the validator reads 65 entries of a list, and reports known fields among a hundred thousand unknown ones', () => {
    let reads = 0;
    const list: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      Object.defineProperty(list, i, { enumerable: true, get: () => (reads++, 'https://a.example/x.png') });
    }
    assert.deepEqual(details({ prompt: 'x', image_urls: list }), [{ field: 'image_urls', message: 'must have at most 4 entries, got 100000' }]);
    assert.ok(reads <= 65, `read ${reads} entries of the list`);
    const many = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, 1]));
    const d = details({ ...many, steps: 0, aspect_ratio: '7:3' });
    assert.deepEqual(d.slice(0, 3).map((x) => x.field), ['prompt', 'steps', 'aspect_ratio']);
    assert.deepEqual(d.slice(3).map((x) => x.field), Array.from({ length: 64 }, (_, i) => `k${i}`), 'the first 64 unknown fields, in body order');
  });

  it('checks well-formed text and URLs inside the compiled schema, after the field\'s own rules', () => {
    assert.deepEqual(details({ prompt: 'a\ud800b' }), [{ field: 'prompt', message: 'must be well-formed Unicode text: it holds a lone surrogate (U+D800) at position 1' }]);
    assert.deepEqual(details({ prompt: 'x', image_urls: ['https://a.example/\udc00'] }), [{ field: 'image_urls[0]', message: 'must be well-formed Unicode text: it holds a lone surrogate (U+DC00) at position 18' }]);
    // A value its pattern refuses is named for the pattern, not also for the refinement.
    assert.deepEqual(details({ prompt: 'x', image_urls: ['ftp://\ud800'] }), [{ field: 'image_urls[0]', message: 'must be an https://, http:// or data:image/(png|jpeg|webp);base64, URL' }]);
    const check = Compile(AsyncBody);
    assert.equal(check.Check({ prompt: 'a\ud800b' }), false, 'the compiled schema itself refuses it');
    assert.equal(check.Check({ prompt: 'x', webhook_url: 'https://' }), false);
  });

  it('agrees with the compiled route schema: what it refuses is refused, on 2,000 random bodies; never throws', () => {
    const checkV1 = Compile(GenerateBody);
    const checkV2 = Compile(AsyncBody);
    let s = 7;
    const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const atoms = [null, true, false, 0, -1, 1, 1.5, 16, 20, 64, 100, 101, 512, 2048, 2064, 2 ** 53, -0, 1e308, '', ' ', 'x', '20', 'euler', 'res_2s', 'jpg', 'png', '1:1', '21:9', 'match_input_image', 'https://a.example/x.png', 'data:image/png;base64,AA', 'ftp://x', '😀'];
    const value = (depth: number): unknown => {
      const k = rnd();
      if (depth > 0 && k < 0.1) return Array.from({ length: Math.floor(rnd() * 6) }, () => value(depth - 1));
      if (depth > 0 && k < 0.15) return { [pick(keys)]: value(depth - 1) };
      return pick(atoms);
    };
    const keys = [...SCHEMA_ORDER, 'webhook_url', 'guidance', '__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    let accepted = 0;
    for (let i = 0; i < 2000; i++) {
      const allowWebhook = rnd() < 0.5;
      let body: unknown;
      if (rnd() < 0.1) body = value(2);
      else {
        const o: Record<string, unknown> = rnd() < 0.8 ? { prompt: 'a cat' } : {};
        const n = Math.floor(rnd() * 5);
        for (let k = 0; k < n; k++) Object.defineProperty(o, pick(keys), { value: value(2), enumerable: true, configurable: true, writable: true });
        body = o;
      }
      let r: ReturnType<typeof v>;
      assert.doesNotThrow(() => (r = v(body, allowWebhook)), JSON.stringify(body));
      r = v(body, allowWebhook);
      const schemaOk = (allowWebhook ? checkV2 : checkV1).Check(body);
      // Whatever the published schema refuses is refused, with a message for it.
      if (!schemaOk) assert.ok(!r.ok && r.details.length > 0, `schema refuses, the validator accepts: ${JSON.stringify(body)}`);
      if (r.ok) {
        accepted++;
        assert.ok(schemaOk, `accepted but the schema refuses: ${JSON.stringify(body)}`);
      } else {
        assert.ok(r.details.length > 0);
        for (const d of r.details) assert.ok(typeof d.field === 'string' && d.field !== '' && typeof d.message === 'string' && d.message !== '');
        // One message per field.
        assert.equal(new Set(r.details.map((d) => d.field)).size, r.details.length, JSON.stringify(r.details));
      }
    }
    assert.ok(accepted > 100, `only ${accepted} of 2000 random bodies were valid: the generator is too narrow`);
  });
});
