/**
 * Pillow's `Image.resize(size, Image.Resampling.LANCZOS)` on 8-bit RGB: what diffusers'
 * Flux2ImageProcessor (`_resize_to_target_area`) and BFL's flux2 (`cap_pixels`) do to a
 * reference above 1 MP. Ported from src/libImaging/Resample.c of Pillow 13.0.0 (the version
 * the engine's environment pins): `precompute_coeffs`, `normalize_coeffs_8bpc`,
 * `ImagingResampleHorizontal_8bpc` / `…Vertical_8bpc`, and the order of the two passes in
 * `ImagingResampleInner`: horizontal first (over only the rows the vertical pass reads),
 * unless the height shrinks by more than twice as many pixels as the width, then vertical
 * first. (Pillow before 13.0 always ran the horizontal pass first; for those tall images its
 * result differs from 13.0's by a few levels.)
 *
 * Exactness: the weights are computed in doubles as in C and rounded to 22-bit fixed point;
 * the sums are integers below 2^31, exact in JavaScript numbers; the rounding (`+ 2^21`, shift,
 * clamp) is Pillow's. The one possible difference is `Math.sin` against the C library's `sin`
 * (both within an ulp): a weight moves only if its fixed-point value sits within ~1e-9 of a
 * rounding boundary, and then the pixel by at most 1. The tests compare with Pillow itself.
 *
 * Sharp's lanczos3 is another filter (libvips shrinks by an integer factor first, then
 * reduces with its own kernel): up to 45/255 away from Pillow on a detailed image.
 */

/** Pillow's PRECISION_BITS: 8 bits for the result, 2 for overflow, in a 32-bit int. */
const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const LANCZOS_SUPPORT = 3;

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function lanczos(x: number): number {
  return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

interface Coefficients {
  /** Taps per output pixel (the stride of `weights`). */
  ksize: number;
  /** First input pixel and number of taps, per output pixel. */
  bounds: Int32Array;
  /** Fixed-point weights, `ksize` per output pixel. */
  weights: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for a box of [0, inSize). */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = LANCZOS_SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const invFilterscale = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) casts truncate toward zero.
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * invFilterscale);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

/** Pillow's clip8: the sum's integer part, clamped to a byte. */
function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Taps of work between two turns of the event loop. */
const WORK_PER_SLICE = 4_000_000;

/** Called before each row of `tapsPerRow` taps: gives the event loop a turn every
 * WORK_PER_SLICE taps, so a 40 MP reference does not stall other requests, and stops there
 * when `signal` is aborted. */
function pacer(tapsPerRow: number, signal?: AbortSignal): () => Promise<void> | undefined {
  const rowsPerSlice = Math.max(1, Math.floor(WORK_PER_SLICE / tapsPerRow));
  let row = 0;
  return () => {
    if (++row % rowsPerSlice !== 0) return undefined;
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => signal?.throwIfAborted());
  };
}

/** Pillow's horizontal pass over rows [first, first + rows) of `src` (`inWidth` wide). */
async function horizontalPass(src: Uint8Array, inWidth: number, first: number, rows: number, c: Coefficients, outWidth: number, signal?: AbortSignal): Promise<Buffer> {
  const { ksize, bounds, weights } = c;
  const out = Buffer.allocUnsafe(outWidth * rows * 3);
  const pace = pacer(outWidth * ksize, signal);
  for (let r = 0; r < rows; r++) {
    await pace();
    const inRow = (first + r) * inWidth * 3;
    const outRow = r * outWidth * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = bounds[xx * 2]!;
      const xmax = bounds[xx * 2 + 1]!;
      const kOff = xx * ksize;
      let ss0 = HALF;
      let ss1 = HALF;
      let ss2 = HALF;
      let p = inRow + xmin * 3;
      for (let x = 0; x < xmax; x++, p += 3) {
        const w = weights[kOff + x]!;
        ss0 += src[p]! * w;
        ss1 += src[p + 1]! * w;
        ss2 += src[p + 2]! * w;
      }
      out[outRow + xx * 3] = clip8(ss0);
      out[outRow + xx * 3 + 1] = clip8(ss1);
      out[outRow + xx * 3 + 2] = clip8(ss2);
    }
  }
  return out;
}

/** Pillow's vertical pass: `outHeight` rows of `width` pixels from `src`, whose row 0 is the
 * input's row `rowOffset` (the horizontal pass kept only the rows this pass reads). */
async function verticalPass(src: Uint8Array, width: number, rowOffset: number, c: Coefficients, outHeight: number, signal?: AbortSignal): Promise<Buffer> {
  const { ksize, bounds, weights } = c;
  const out = Buffer.allocUnsafe(width * outHeight * 3);
  const stride = width * 3;
  const pace = pacer(width * ksize, signal);
  for (let yy = 0; yy < outHeight; yy++) {
    await pace();
    const ymin = bounds[yy * 2]! - rowOffset;
    const ymax = bounds[yy * 2 + 1]!;
    const kOff = yy * ksize;
    const outRow = yy * stride;
    for (let ch = 0; ch < stride; ch++) {
      let ss = HALF;
      let p = ymin * stride + ch;
      for (let y = 0; y < ymax; y++, p += stride) ss += src[p]! * weights[kOff + y]!;
      out[outRow + ch] = clip8(ss);
    }
  }
  return out;
}

/**
 * Resizes packed 8-bit RGB (`width`×`height`) to `outWidth`×`outHeight` exactly as Pillow
 * 13.0's LANCZOS does.
 */
export async function resizeLanczos(
  src: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
  signal?: AbortSignal,
): Promise<Buffer> {
  if (src.length !== width * height * 3) throw new Error(`resizeLanczos: ${src.length} bytes are not a ${width}×${height} RGB image`);
  const needHorizontal = outWidth !== width;
  const needVertical = outHeight !== height;
  const horizontalFirst = !(height - outHeight > 0 && height - outHeight > (width - outWidth) * 2);
  const horiz = needHorizontal ? coefficients(width, outWidth) : null;
  const vert = needVertical ? coefficients(height, outHeight) : null;
  if (horizontalFirst) {
    let rows: Uint8Array = src;
    let rowOffset = 0;
    if (horiz) {
      // The input rows the vertical pass reads (all of them when there is none).
      const first = vert ? vert.bounds[0]! : 0;
      const last = vert ? vert.bounds[outHeight * 2 - 2]! + vert.bounds[outHeight * 2 - 1]! : height;
      rows = await horizontalPass(src, width, first, last - first, horiz, outWidth, signal);
      rowOffset = first;
    }
    return vert ? verticalPass(rows, outWidth, rowOffset, vert, outHeight, signal) : Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength);
  }
  const rows = vert ? await verticalPass(src, width, 0, vert, outHeight, signal) : src;
  return horiz ? horizontalPass(rows, width, 0, outHeight, horiz, outWidth, signal) : Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength);
}
