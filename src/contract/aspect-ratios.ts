/**
 * Output sizes (contract §3). Every size is a multiple of 16. A ratio r maps to the
 * largest w×h of at most 1024×1024 pixels with |w/h − r| / r ≤ 1% (ties: the smaller
 * error); `ASPECT_RATIOS` is that rule applied to the named ratios, and a test checks it
 * against the contract's table. With no candidate within 1% (only for extreme ratios of
 * match_input_image) the closest ratio wins, then the larger area.
 */

export const MULTIPLE = 16;
export const MAX_AREA = 1024 * 1024;
export const MIN_SIDE = 64;
export const MAX_SIDE = 2048;
const TOLERANCE = 0.01;

export interface Size {
  width: number;
  height: number;
}

export function sizeForRatio(r: number): Size {
  if (!(r > 0) || !Number.isFinite(r)) throw new RangeError(`ratio must be positive, got ${r}`);
  let best: { s: Size; err: number; area: number } | undefined;
  let closest: { s: Size; err: number; area: number } | undefined;
  for (let h = MIN_SIDE; h <= MAX_SIDE; h += MULTIPLE) {
    // For this height, only the widths nearest the ratio can win.
    const ideal = r * h;
    for (const w of [Math.floor(ideal / MULTIPLE) * MULTIPLE, Math.ceil(ideal / MULTIPLE) * MULTIPLE]) {
      if (w < MIN_SIDE || w > MAX_SIDE || w * h > MAX_AREA) continue;
      const err = Math.abs(w / h - r) / r;
      const area = w * h;
      const cand = { s: { width: w, height: h }, err, area };
      if (err <= TOLERANCE && (!best || area > best.area || (area === best.area && err < best.err))) best = cand;
      if (!closest || err < closest.err - 1e-12 || (Math.abs(err - closest.err) <= 1e-12 && area > closest.area)) closest = cand;
    }
  }
  const pick = best ?? closest;
  if (!pick) throw new RangeError(`no size for ratio ${r}`);
  return pick.s;
}

const NAMED: Array<[string, number, number]> = [
  ['1:1', 1, 1], ['2:3', 2, 3], ['3:2', 3, 2], ['3:4', 3, 4], ['4:3', 4, 3], ['4:5', 4, 5],
  ['5:4', 5, 4], ['9:16', 9, 16], ['16:9', 16, 9], ['21:9', 21, 9], ['9:21', 9, 21],
];

export const ASPECT_RATIOS: Readonly<Record<string, Size>> = Object.freeze(
  Object.fromEntries(NAMED.map(([name, a, b]) => [name, sizeForRatio(a / b)])),
);

export const ASPECT_RATIO_NAMES = [...NAMED.map(([n]) => n), 'match_input_image'] as const;
