import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { ApiError } from '../contract/errors.js';
import { decodeReference, sniffFormat, targetSize } from './decode.js';
import { encodeImage, readMetadata } from './encode.js';
import { parseDataUri } from './data-uri.js';

const solid = (w: number, h: number) => sharp({ create: { width: w, height: h, channels: 3, background: '#808080' } });
const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof ApiError ? e.code : String(e)));

describe('reference decoding', () => {
  it('sniffs png, jpeg and webp from the bytes, and refuses anything else', async () => {
    assert.equal(sniffFormat(await solid(64, 64).png().toBuffer()), 'png');
    assert.equal(sniffFormat(await solid(64, 64).jpeg().toBuffer()), 'jpeg');
    assert.equal(sniffFormat(await solid(64, 64).webp().toBuffer()), 'webp');
    assert.equal(await code(decodeReference(await solid(64, 64).gif().toBuffer(), { maxPixels: 1e7, field: 'f' })), 'image_invalid');
    assert.equal(await code(decodeReference(Buffer.from('hello'), { maxPixels: 1e7, field: 'f' })), 'image_invalid');
  });

  it('downscales to at most 1024² with Lanczos and centre-crops to multiples of 16', async () => {
    const r = await decodeReference(await solid(3000, 2000).png().toBuffer(), { maxPixels: 1e8, field: 'f' });
    const t = targetSize(3000, 2000); // 1254 × 836
    assert.deepEqual(t, { width: 1254, height: 836 });
    assert.deepEqual([r.image.width, r.image.height], [1248, 832]);
    assert.equal(r.image.data.length, 1248 * 832 * 3);
    assert.deepEqual(r.original, { width: 3000, height: 2000 });
    const small = await decodeReference(await solid(100, 70).jpeg().toBuffer(), { maxPixels: 1e7, field: 'f' });
    assert.deepEqual([small.image.width, small.image.height], [96, 64]); // never upscaled
  });

  it('applies EXIF orientation before measuring and cropping', async () => {
    const rotated = await solid(200, 100).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const r = await decodeReference(rotated, { maxPixels: 1e7, field: 'f' });
    assert.deepEqual(r.original, { width: 100, height: 200 });
    assert.deepEqual([r.image.width, r.image.height], [96, 192]);
  });

  it('drops alpha, and refuses too small, too elongated and too many pixels (before decoding)', async () => {
    const alpha = await sharp({ create: { width: 64, height: 64, channels: 4, background: { r: 10, g: 20, b: 30, alpha: 0.5 } } }).png().toBuffer();
    const a = await decodeReference(alpha, { maxPixels: 1e7, field: 'f' });
    assert.equal(a.image.data.length, 64 * 64 * 3);
    assert.equal(await code(decodeReference(await solid(63, 200).png().toBuffer(), { maxPixels: 1e7, field: 'f' })), 'image_too_small');
    assert.equal(await code(decodeReference(await solid(1000, 100).png().toBuffer(), { maxPixels: 1e7, field: 'f' })), 'image_bad_ratio');
    // A PNG header claiming 50000×50000: refused from the header, no pixels allocated.
    const head = await solid(64, 64).png().toBuffer();
    const bomb = Buffer.from(head);
    bomb.writeUInt32BE(50_000, 16);
    bomb.writeUInt32BE(50_000, 20);
    assert.equal(await code(decodeReference(bomb, { maxPixels: 40_000_000, field: 'f' })), 'image_too_large');
  });

  it('parses data: URIs strictly and caps their size first', () => {
    assert.equal(parseDataUri('data:image/png;base64,aGk=', { maxBytes: 10, field: 'f' }).toString(), 'hi');
    assert.throws(() => parseDataUri('data:image/png;base64,!!!!', { maxBytes: 10, field: 'f' }), /malformed/);
    assert.throws(() => parseDataUri(`data:image/png;base64,${'A'.repeat(100)}`, { maxBytes: 10, field: 'f' }), /larger than/);
    assert.throws(() => parseDataUri('data:text/plain;base64,aGk=', { maxBytes: 10, field: 'f' }), /data:image/);
  });
});

describe('output encoding', () => {
  const img = { width: 32, height: 16, data: Buffer.alloc(32 * 16 * 3, 200) };
  it('encodes png, jpeg and webp with the right magic bytes; quality changes jpeg size', async () => {
    assert.equal(sniffFormat(await encodeImage(img, { format: 'png', quality: 90 })), 'png');
    assert.equal(sniffFormat(await encodeImage(img, { format: 'webp', quality: 90 })), 'webp');
    const noisy = { width: 64, height: 64, data: Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 2654435761) % 251)) };
    const hi = await encodeImage(noisy, { format: 'jpeg', quality: 95 });
    const lo = await encodeImage(noisy, { format: 'jpeg', quality: 10 });
    assert.equal(sniffFormat(hi), 'jpeg');
    assert.ok(lo.length < hi.length);
  });

  it('writes the parameters as PNG text or EXIF, and nothing when turned off', async () => {
    const meta = { parameters: '{"model":"flux-2-klein-4b","prompt":"café ☕"}', software: 'klein-serve' };
    const png = await encodeImage(img, { format: 'png', quality: 90, metadata: meta });
    const got = await readMetadata(png);
    assert.equal(JSON.parse(got.parameters ?? '{}').prompt, 'café ☕');
    assert.equal(got.software, 'klein-serve');
    assert.deepEqual(await sharp(png).metadata().then((m) => [m.width, m.height]), [32, 16], 'still a valid PNG');
    const jpg = await encodeImage(img, { format: 'jpeg', quality: 90, metadata: meta });
    assert.match((await readMetadata(jpg)).parameters ?? '', /flux-2-klein-4b/);
    assert.deepEqual(await readMetadata(await encodeImage(img, { format: 'png', quality: 90, metadata: null })), {});
  });
});
