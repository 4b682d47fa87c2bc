/**
 * Parity through the served path: HTTP → gateway (reference fetch, decode, preprocessing) →
 * queue → worker → engine process, on `tiny` and `tiny:base`, against diffusers'
 * Flux2KleinPipeline run on the same inputs (test/e2e/parity_reference.py: the pipeline from
 * the model directory, references opened with PIL from the bytes sent). Each image must
 * come back within 1/255 of diffusers' at every pixel.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { generate, startTestServer, type KeyInfo, type TestServer } from './harness.js';

const root = new URL('../..', import.meta.url).pathname;
const python = process.env.KLEIN_ENGINE_PYTHON ?? join(root, 'engine/.venv/bin/python');

/** A detailed picture above 1 MP (stripes, gradients, noise), where resize filters differ most. */
function detailed(width: number, height: number, seed: number): Buffer {
  const px = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const o = (y * width + x) * 3;
      px[o] = (x * 5 + y * 3) & 255;
      px[o + 1] = (Math.sin(x / 4) * Math.cos(y / 6) * 127 + 128) | 0;
      px[o + 2] = s >>> 24;
    }
  }
  return px;
}

interface Case {
  name: string;
  prompt: string;
  negative_prompt: string;
  cfg: number;
  steps: number;
  width: number;
  height: number;
  seed: number;
  images: string[];
}

const NEGATIVE = 'low quality, blurry, less details';
/** How much sharper the attention of the reference cases' model is (parity_reference.py). */
const SHARPEN = 20;

function caseOf(name: string, fields: Partial<Case>): Case {
  return { name, prompt: 'a lighthouse at dusk, oil painting', negative_prompt: NEGATIVE, cfg: 1, steps: 4, width: 128, height: 128, seed: 11, images: [], ...fields };
}

/** Runs diffusers on `cases`; returns each case's RGB. */
function reference(model: string, cases: Case[], dir: string): Map<string, Buffer> {
  const r = spawnSync(python, [join(root, 'test/e2e/parity_reference.py')], {
    input: JSON.stringify({ model, out: dir, cases }),
    encoding: 'utf8',
    env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' },
    timeout: 600_000,
  });
  assert.equal(r.status, 0, `parity_reference.py failed: ${r.stderr}`);
  return new Map(cases.map((c) => [c.name, readFileSync(join(dir, `${c.name}.rgb`))]));
}

async function served(s: TestServer, key: KeyInfo, c: Case, files: Map<string, Buffer>): Promise<{ width: number; height: number; data: Buffer }> {
  const image_urls = c.images.map((p) => `data:image/${p.endsWith('.png') ? 'png' : 'jpeg'};base64,${files.get(p)!.toString('base64')}`);
  const body = { prompt: c.prompt, negative_prompt: c.negative_prompt, cfg: c.cfg, steps: c.steps, width: c.width, height: c.height, seed: c.seed, image_urls };
  const r = await generate(s.url, key.key, body);
  const bytes = Buffer.from(await r.arrayBuffer());
  assert.equal(r.status, 200, bytes.toString('utf8').slice(0, 300));
  const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data };
}

function maxDifference(a: Buffer, b: Buffer): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

async function checkModel(model: string, cases: Case[], files: Map<string, Buffer>, dir: string) {
  const want = reference(model, cases, dir);
  const s = await startTestServer({ KLEIN_MODEL: model });
  try {
    const key = s.createKey({ credits: '1000', rpm: 1000, concurrency: 4 });
    const got = new Map<string, number>();
    for (const c of cases) {
      const image = await served(s, key, c, files);
      assert.deepEqual([image.width, image.height], [c.width, c.height]);
      got.set(c.name, maxDifference(image.data, want.get(c.name)!));
    }
    return got;
  } finally {
    await s.close();
  }
}

describe('the served path equals diffusers (tiny)', () => {
  let dir = '';
  const files = new Map<string, Buffer>();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'klein-parity-'));
    const save = (name: string, bytes: Buffer) => {
      const p = join(dir, name);
      writeFileSync(p, bytes);
      files.set(p, bytes);
      return p;
    };
    save('ref-a.png', await sharp(detailed(1600, 1200, 1), { raw: { width: 1600, height: 1200, channels: 3 } }).png().toBuffer());
    save('ref-b.jpg', await sharp(detailed(1100, 1500, 2), { raw: { width: 1100, height: 1500, channels: 3 } }).jpeg({ quality: 92 }).toBuffer());
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('tiny: text-to-image, CFG with a negative prompt, a non-square size', async () => {
    const cases = [
      caseOf('text', {}),
      caseOf('cfg', { cfg: 3.5, negative_prompt: 'washed out, grainy' }),
      caseOf('non-square', { width: 320, height: 192, seed: 5 }),
    ];
    const got = await checkModel('tiny', cases, files, dir);
    console.log('max difference from diffusers (of 255):', Object.fromEntries(got));
    for (const [name, max] of got) assert.ok(max <= 1, `${name}: ${max}/255`);
  });

  it('tiny with sharpened attention: one and two references above 1 MP', async () => {
    // On tiny itself another reference image moves the output by at most 1/255 (its attention
    // averages thousands of reference tokens): parity_reference.py's `sharpen` makes the
    // output depend on the reference pixels, so the gateway's preprocessing is seen too.
    const model = join(dir, 'tiny-sharp');
    const r = spawnSync(python, [join(root, 'test/e2e/parity_reference.py'), 'sharpen', 'tiny', model, String(SHARPEN)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const [a, b] = [join(dir, 'ref-a.png'), join(dir, 'ref-b.jpg')];
    const cases = [
      caseOf('one-reference', { images: [a], width: 192, height: 128, prompt: 'make it blue' }),
      caseOf('two-references', { images: [a, b], width: 128, height: 192, prompt: 'put the two together' }),
    ];
    const got = await checkModel(model, cases, files, dir);
    console.log('max difference from diffusers (of 255):', Object.fromEntries(got));
    for (const [name, max] of got) assert.ok(max <= 1, `${name}: ${max}/255`);
  });

  it('the base variant with CFG', async () => {
    const cases = [caseOf('base-cfg', { cfg: 4, steps: 6, width: 160, height: 96 })];
    const got = await checkModel('tiny:base', cases, files, dir);
    console.log('max difference from diffusers (of 255):', Object.fromEntries(got));
    for (const [name, max] of got) assert.ok(max <= 1, `${name}: ${max}/255`);
  });
});
