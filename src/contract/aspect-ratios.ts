/**
 * Output sizes (contract §3).
 *
 * The rule: for a ratio a:b, among all w×h with w and h multiples of 16 (the model's 8×
 * VAE and 2×2 patches), each side 64…2048 and w·h ≤ 1024², keep those whose ratio error
 *
 *     err(w, h) = |w/h − a/b| / (a/b)          (the contract's "ratio error" column)
 *
 * is at most 1%, and take the largest area; ties go to the smaller error, then the wider
 * size. With no candidate within 1% (only beyond 32:1, or for references refused anyway
 * as too elongated) the smallest error wins, ties to the larger area, then the wider size.
 *
 * Errors are compared exactly: err ≤ 1% ⇔ 100·|w·b − h·a| ≤ h·a, and err₁ < err₂ ⇔
 * |w₁b − h₁a|·h₂ < |w₂b − h₂a|·h₁ — integers well below 2^53 for integer a, b (a
 * reference's pixel size), so the choice never depends on float rounding.
 *
 * `ASPECT_RATIOS` is the contract's table written out; a test checks that the rule
 * reproduces every row, ratio error and megapixel columns included.
 */

export const SIZE_MULTIPLE = 16;
export const MAX_AREA = 1024 * 1024;
export const MIN_SIDE = 64;
export const MAX_SIDE = 2048;
/** The ratio tolerance, as a percentage (1%). */
const TOLERANCE_PERCENT = 1;

export interface Size {
  width: number;
  height: number;
}

/** Every named ratio, in the contract's order (the seed page's ten, then 9:21). */
export const NAMED_ASPECT_RATIOS = ['1:1', '2:3', '3:2', '3:4', '4:3', '4:5', '5:4', '9:16', '16:9', '21:9', '9:21'] as const;
export type NamedAspectRatio = (typeof NAMED_ASPECT_RATIOS)[number];
export const MATCH_INPUT_IMAGE = 'match_input_image';
/** Every accepted `aspect_ratio`. */
export const ASPECT_RATIO_NAMES = [...NAMED_ASPECT_RATIOS, MATCH_INPUT_IMAGE] as const;

/** The contract §3 table, verbatim. Named ratios map to these sizes. */
export const ASPECT_RATIOS: Readonly<Record<NamedAspectRatio, Readonly<Size>>> = Object.freeze({
  '1:1': { width: 1024, height: 1024 },
  '2:3': { width: 832, height: 1248 },
  '3:2': { width: 1248, height: 832 },
  '3:4': { width: 880, height: 1184 },
  '4:3': { width: 1184, height: 880 },
  '4:5': { width: 912, height: 1136 },
  '5:4': { width: 1136, height: 912 },
  '9:16': { width: 768, height: 1360 },
  '16:9': { width: 1360, height: 768 },
  '21:9': { width: 1536, height: 656 },
  '9:21': { width: 656, height: 1536 },
});

export function isNamedAspectRatio(s: string): s is NamedAspectRatio {
  return Object.prototype.hasOwnProperty.call(ASPECT_RATIOS, s);
}

/** The contract's ratio error of w×h against a:b, as a fraction (0.009 = 0.9%). */
export function ratioError(size: Size, a: number, b: number): number {
  return Math.abs(size.width / size.height - a / b) / (a / b);
}

/**
 * The size for the ratio a:b (any positive finite numbers; integers give exact
 * comparisons). Always returns a size inside the limits above. Deterministic: it scans
 * every candidate (128 × 128 of them) and breaks every tie explicitly.
 */
export function sizeForAspect(a: number, b: number): Size {
  if (!(a > 0 && b > 0 && Number.isFinite(a) && Number.isFinite(b))) {
    throw new RangeError(`aspect ratio needs two positive finite numbers, got ${a}:${b}`);
  }
  let best: Size | undefined; // within tolerance
  let closest: Size | undefined; // fallback
  let bestDev = 0;
  let closestDev = 0;
  for (let h = MIN_SIDE; h <= MAX_SIDE; h += SIZE_MULTIPLE) {
    const wMax = Math.min(MAX_SIDE, Math.floor(MAX_AREA / h / SIZE_MULTIPLE) * SIZE_MULTIPLE);
    for (let w = MIN_SIDE; w <= wMax; w += SIZE_MULTIPLE) {
      // dev / (h·a) is the ratio error; comparing dev₁·h₂ with dev₂·h₁ compares errors.
      const dev = Math.abs(w * b - h * a);
      if (100 * dev <= TOLERANCE_PERCENT * h * a) {
        if (!best || w * h > best.width * best.height || (w * h === best.width * best.height && (dev * best.height < bestDev * h || (dev * best.height === bestDev * h && w > best.width)))) {
          best = { width: w, height: h };
          bestDev = dev;
        }
      }
      if (!closest) {
        closest = { width: w, height: h };
        closestDev = dev;
        continue;
      }
      const lhs = dev * closest.height;
      const rhs = closestDev * h;
      const area = w * h;
      const closestArea = closest.width * closest.height;
      if (lhs < rhs || (lhs === rhs && (area > closestArea || (area === closestArea && w > closest.width)))) {
        closest = { width: w, height: h };
        closestDev = dev;
      }
    }
  }
  // `closest` is always set: the loops visit at least 64×64.
  return best ?? closest!;
}

/** The size for a ratio given as one number (width / height). */
export function sizeForRatio(r: number): Size {
  return sizeForAspect(r, 1);
}
