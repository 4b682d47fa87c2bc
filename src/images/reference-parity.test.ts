/**
 * A reference decoded here equals what diffusers' Flux2KleinPipeline feeds its VAE for the
 * same file: its own code (`check_image_input`, `_resize_to_target_area` above 1 MP, floor to
 * multiples of 16, `preprocess(…, resize_mode="crop")`) runs in the engine's Python
 * environment on the same bytes. The documented differences are checked against what they
 * follow instead: EXIF orientation (diffusers on the transposed image) and alpha or palette
 * above 1 MP (BFL's flux2 `default_prep`: RGB first, then Lanczos, then the crop).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { decodeReference } from './decode.js';

const root = new URL('../..', import.meta.url).pathname;
const python = process.env.KLEIN_ENGINE_PYTHON ?? join(root, 'engine/.venv/bin/python');

// For each "path:rule", writes path.out (RGB bytes) and prints "width height".
const PREPROCESS = `
import sys, numpy as np
from PIL import Image, ImageOps
from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor

proc = Flux2ImageProcessor(vae_scale_factor=16)  # as Flux2KleinPipeline builds it (vae_scale_factor * 2)

def diffusers(img):  # Flux2KleinPipeline.__call__, "4. process images"
    proc.check_image_input(img)
    w, h = img.size
    if w * h > 1024 * 1024:
        img = proc._resize_to_target_area(img, 1024 * 1024)
        w, h = img.size
    w, h = (w // 16) * 16, (h // 16) * 16
    t = proc.preprocess(img, height=h, width=w, resize_mode="crop")[0]
    return ((t.permute(1, 2, 0).numpy() + 1) / 2 * 255).round().astype(np.uint8)

def bfl(img):  # flux2 sampling.default_prep: to_rgb, cap_pixels(1024²), center_crop_to_multiple_of_x(16)
    img = img.convert("RGB")
    w, h = img.size
    if w * h > 1024 * 1024:
        s = (1024 * 1024 / (w * h)) ** 0.5
        img = img.resize((int(w * s), int(h * s)), Image.Resampling.LANCZOS)
    w, h = img.size
    nw, nh = (w // 16) * 16, (h // 16) * 16
    l, t = (w - nw) // 2, (h - nh) // 2
    return np.asarray(img.crop((l, t, l + nw, t + nh)))

for arg in sys.argv[1:]:
    path, rule = arg.rsplit(":", 1)
    img = Image.open(path)
    out = {"diffusers": lambda: diffusers(img), "exif": lambda: diffusers(ImageOps.exif_transpose(img)), "bfl": lambda: bfl(img)}[rule]()
    open(path + ".out", "wb").write(out.tobytes())
    print(out.shape[1], out.shape[0])
`;

/** A detailed picture: fine stripes, gradients and noise (where resizing filters differ most). */
function detailed(width: number, height: number, channels: 3 | 4, seed: number): Buffer {
  const px = Buffer.alloc(width * height * channels);
  let s = seed;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const o = (y * width + x) * channels;
      px[o] = (x * 7 + y * 3) & 255;
      px[o + 1] = (Math.sin(x / 3) * Math.cos(y / 5) * 127 + 128) | 0;
      px[o + 2] = s >>> 24;
      if (channels === 4) px[o + 3] = (x + y) % 3 === 0 ? 0 : (x * y) & 255;
    }
  }
  return px;
}

const raw = (w: number, h: number, channels: 3 | 4, seed: number) => sharp(detailed(w, h, channels, seed), { raw: { width: w, height: h, channels } });

interface Case {
  name: string;
  rule: 'diffusers' | 'exif' | 'bfl';
  bytes: () => Promise<Buffer>;
}

const CASES: Case[] = [
  { name: 'png 1600×1200', rule: 'diffusers', bytes: () => raw(1600, 1200, 3, 1).png().toBuffer() },
  { name: 'jpeg 4:2:0 2000×1500', rule: 'diffusers', bytes: () => raw(2000, 1500, 3, 2).jpeg({ quality: 90 }).toBuffer() },
  { name: 'webp 1500×1000', rule: 'diffusers', bytes: () => raw(1500, 1000, 3, 3).webp({ quality: 80 }).toBuffer() },
  { name: 'grey png 1300×1100', rule: 'diffusers', bytes: () => raw(1300, 1100, 3, 4).greyscale().png().toBuffer() },
  { name: 'tall jpeg 900×2500', rule: 'diffusers', bytes: () => raw(900, 2500, 3, 5).jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer() },
  { name: 'Display P3 jpeg 1400×1000 (profile not applied)', rule: 'diffusers', bytes: () => raw(1400, 1000, 3, 6).withIccProfile('p3').jpeg().toBuffer() },
  { name: 'png under 1 MP, cropped only', rule: 'diffusers', bytes: () => raw(1000, 700, 3, 7).png().toBuffer() },
  { name: 'EXIF-rotated jpeg 1800×1000', rule: 'exif', bytes: () => raw(1800, 1000, 3, 8).jpeg().withMetadata({ orientation: 6 }).toBuffer() },
  { name: 'RGBA png 1500×1000', rule: 'bfl', bytes: () => raw(1500, 1000, 4, 9).png().toBuffer() },
  { name: 'palette png 1400×1100', rule: 'bfl', bytes: () => raw(1400, 1100, 3, 10).png({ palette: true, colours: 64 }).toBuffer() },
];

describe('reference preprocessing equals the reference pipelines', () => {
  let dir = '';
  const expected = new Map<string, { width: number; height: number; data: Buffer }>();
  const files = new Map<string, Buffer>();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'klein-refs-'));
    const args: string[] = [];
    for (const [i, c] of CASES.entries()) {
      const bytes = await c.bytes();
      files.set(c.name, bytes);
      writeFileSync(join(dir, `${i}`), bytes);
      args.push(`${join(dir, `${i}`)}:${c.rule}`);
    }
    const r = spawnSync(python, ['-c', PREPROCESS, ...args], { encoding: 'utf8', env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' } });
    assert.equal(r.status, 0, r.stderr);
    const sizes = r.stdout.trim().split('\n');
    for (const [i, c] of CASES.entries()) {
      const [width, height] = sizes[i]!.split(' ').map(Number) as [number, number];
      expected.set(c.name, { width, height, data: readFileSync(join(dir, `${i}.out`)) });
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const c of CASES) {
    it(`${c.name}: within 1/255 of ${c.rule === 'bfl' ? "BFL's" : 'diffusers\''} pixels`, async () => {
      const want = expected.get(c.name)!;
      const got = (await decodeReference(files.get(c.name)!, { maxPixels: 40_000_000, field: 'f' })).image;
      assert.deepEqual([got.width, got.height], [want.width, want.height]);
      let max = 0;
      for (let i = 0; i < want.data.length; i++) max = Math.max(max, Math.abs(want.data[i]! - got.data[i]!));
      assert.ok(max <= 1, `max difference ${max}/255`);
    });
  }
});
