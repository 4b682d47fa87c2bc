import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { encodeImage, readMetadata, SMALL_PNG_PIXELS } from './encode.js';

/** A seeded image with smooth and noisy parts, as outputs have. */
function image(width: number, height: number, seed: number) {
  const data = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = ((i % (width * 3)) + (s >>> 27)) & 255;
  }
  return { width, height, data };
}

async function pixels(png: Buffer) {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

describe('encodeImage png', () => {
  // Both sides of the small-image threshold: written here, and through sharp.
  const sizes: Array<[number, number]> = [[64, 64], [64, 256], [128, 128], [129, 128], [256, 64 + 1]];

  it('decodes to exactly the pixels it was given, small or not', async () => {
    for (const [w, h] of sizes) {
      const img = image(w, h, w * 7 + h);
      const png = await encodeImage(img, { format: 'png', quality: 90 });
      const back = await pixels(png);
      assert.deepEqual([back.width, back.height, back.channels], [w, h, 3], `${w}x${h}`);
      assert.ok(back.data.equals(img.data), `${w}x${h}: pixels differ`);
      const meta = await sharp(png).metadata();
      assert.deepEqual([meta.format, meta.depth, meta.hasAlpha], ['png', 'uchar', false]);
    }
    assert.ok(64 * 256 <= SMALL_PNG_PIXELS && 129 * 128 > SMALL_PNG_PIXELS);
  });

  it('carries the generation parameters, Unicode escaped, on both paths; the same image encodes the same bytes', async () => {
    const metadata = { parameters: JSON.stringify({ prompt: 'un chat — 猫', seed: 7 }), software: 'klein-serve' };
    for (const [w, h] of [[64, 64], [256, 256]] as const) {
      const img = image(w, h, 3);
      const png = await encodeImage(img, { format: 'png', quality: 90, metadata });
      const read = await readMetadata(png);
      assert.equal(read.software, 'klein-serve');
      assert.deepEqual(JSON.parse(read.parameters!), { prompt: 'un chat — 猫', seed: 7 });
      assert.ok((await pixels(png)).data.equals(img.data));
      assert.ok(png.equals(await encodeImage(img, { format: 'png', quality: 90, metadata })), `${w}x${h}: not reproducible`);
    }
  });
});
