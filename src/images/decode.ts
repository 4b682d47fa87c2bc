/**
 * Reference images (contract §3), preprocessed as diffusers' Flux2KleinPipeline does
 * (`check_image_input`, `_resize_to_target_area`, floor to multiples of 16, centre crop) so
 * that the engine receives the pixels the reference pipeline would encode:
 * - format sniffed from the bytes (png, jpeg, webp); the pixel count checked from the header
 *   before any pixel is decoded;
 * - decoded by libvips to the same 8-bit RGB as PIL's `Image.open(…).convert("RGB")` (equal
 *   on png, jpeg, webp, grey, palette and 16-bit files); embedded ICC profiles are not
 *   applied, as PIL does not apply them (a Display P3 photo keeps its numbers);
 * - downscaled, when above 1024×1024 pixels of area, with Pillow's own LANCZOS (lanczos.ts,
 *   byte for byte), then centre-cropped to multiples of 16.
 * Deliberate differences from diffusers: EXIF orientation is applied (diffusers encodes the
 * stored, unrotated pixels), and an image is made RGB before it is resized, as BFL's flux2
 * does (`default_prep`: `to_rgb` before `cap_pixels`): alpha is dropped, not premultiplied
 * into the resize, and a palette image is resized by Lanczos, not by PIL's nearest neighbour
 * for palette mode. Equal to diffusers for opaque and non-palette images. CMYK JPEGs are
 * converted by libvips' CMYK profile, not PIL's plain formula.
 */
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import type { RgbImage } from '../contract/types.js';
import { ApiError, type ErrorCode } from '../contract/errors.js';
import { MAX_AREA, MIN_SIDE, SIZE_MULTIPLE } from '../contract/aspect-ratios.js';
import { resizeLanczos } from './lanczos.js';

/** A reference is downscaled to at most the model's output area (contract §3). */
const TARGET_AREA = MAX_AREA;
export const MAX_RATIO = 8;

export type SniffedFormat = 'png' | 'jpeg' | 'webp';

export function sniffFormat(b: Buffer): SniffedFormat | null {
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  return null;
}

function fail(code: ErrorCode, field: string, message: string): ApiError {
  return new ApiError(code, `${field}: ${message}`, { details: [{ field, message }] });
}

/** The size after downscaling to at most TARGET_AREA: Flux2ImageProcessor._resize_to_target_area's
 * `int(side * sqrt(area / (w·h)))`, in the same double arithmetic. */
export function targetSize(width: number, height: number): { width: number; height: number } {
  if (width * height <= TARGET_AREA) return { width, height };
  const scale = Math.sqrt(TARGET_AREA / (width * height));
  return { width: Math.floor(width * scale), height: Math.floor(height * scale) };
}

export interface DecodedReference {
  image: RgbImage;
  /** Size after EXIF orientation, before resizing (decides match_input_image). */
  original: { width: number; height: number };
  format: SniffedFormat;
}

export async function decodeReference(
  bytes: Buffer,
  options: { maxPixels: number; field: string; signal?: AbortSignal | undefined },
): Promise<DecodedReference> {
  const format = sniffFormat(bytes);
  if (!format) throw fail('image_invalid', options.field, 'is not a PNG, JPEG or WebP image');
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false, failOn: 'none' }).metadata();
  } catch {
    throw fail('image_invalid', options.field, `is not a readable ${format.toUpperCase()} image`);
  }
  if (!meta.width || !meta.height) throw fail('image_invalid', options.field, 'has no dimensions');
  if (meta.width * meta.height > options.maxPixels) {
    throw fail('image_too_large', options.field, `has ${meta.width}×${meta.height} pixels; at most ${options.maxPixels} are accepted`);
  }
  const rotated = (meta.orientation ?? 1) >= 5;
  const w = rotated ? meta.height : meta.width;
  const h = rotated ? meta.width : meta.height;
  if (Math.min(w, h) < MIN_SIDE) throw fail('image_too_small', options.field, `is ${w}×${h}; each side must be at least ${MIN_SIDE} pixels`);
  if (Math.max(w, h) / Math.min(w, h) > MAX_RATIO) throw fail('image_bad_ratio', options.field, `is ${w}×${h}; the long side may be at most ${MAX_RATIO}× the short side`);

  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await sharp(bytes, { limitInputPixels: options.maxPixels, failOn: 'error' })
      .rotate()
      .removeAlpha()
      .keepIccProfile()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch {
    throw fail('image_invalid', options.field, `could not be decoded as ${format.toUpperCase()}`);
  }
  if (decoded.info.channels !== 3) throw fail('image_invalid', options.field, `decoded to ${decoded.info.channels} channels`);
  if (decoded.info.width !== w || decoded.info.height !== h) throw fail('image_invalid', options.field, `decoded to ${decoded.info.width}×${decoded.info.height}, not the ${w}×${h} of its header`);
  const t = targetSize(w, h);
  const data = t.width === w && t.height === h ? decoded.data : await resizeLanczos(decoded.data, w, h, t.width, t.height, options.signal);
  // Flux2ImageProcessor._resize_and_crop: floor to multiples of 16, crop around the centre.
  const cw = Math.floor(t.width / SIZE_MULTIPLE) * SIZE_MULTIPLE;
  const ch = Math.floor(t.height / SIZE_MULTIPLE) * SIZE_MULTIPLE;
  const left = Math.floor((t.width - cw) / 2);
  const top = Math.floor((t.height - ch) / 2);
  const out = Buffer.allocUnsafe(cw * ch * 3);
  for (let y = 0; y < ch; y++) {
    const src = ((top + y) * t.width + left) * 3;
    data.copy(out, y * cw * 3, src, src + cw * 3);
  }
  return { image: { width: cw, height: ch, data: out }, original: { width: w, height: h }, format };
}
