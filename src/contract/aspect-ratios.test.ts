import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ASPECT_RATIOS,
  ASPECT_RATIO_NAMES,
  MAX_AREA,
  MAX_SIDE,
  MIN_SIDE,
  NAMED_ASPECT_RATIOS,
  ratioError,
  sizeForAspect,
  sizeForRatio,
  type Size,
} from './aspect-ratios.js';

// Contract §3, every column, copied from the table: name → [width, height, MP, ratio error %].
const CONTRACT_TABLE: Array<[string, number, number, string, string]> = [
  ['1:1', 1024, 1024, '1.000', '0'],
  ['2:3', 832, 1248, '0.990', '0'],
  ['3:2', 1248, 832, '0.990', '0'],
  ['3:4', 880, 1184, '0.994', '0.90'],
  ['4:3', 1184, 880, '0.994', '0.91'],
  ['4:5', 912, 1136, '0.988', '0.35'],
  ['5:4', 1136, 912, '0.988', '0.35'],
  ['9:16', 768, 1360, '0.996', '0.39'],
  ['16:9', 1360, 768, '0.996', '0.39'],
  ['21:9', 1536, 656, '0.961', '0.35'],
  ['9:21', 656, 1536, '0.961', '0.35'],
];

const parse = (name: string) => name.split(':').map(Number) as [number, number];

function valid(s: Size): boolean {
  return (
    s.width % 16 === 0 && s.height % 16 === 0 && s.width >= MIN_SIDE && s.height >= MIN_SIDE &&
    s.width <= MAX_SIDE && s.height <= MAX_SIDE && s.width * s.height <= MAX_AREA
  );
}

/** Every allowed size, for checking the rule by exhaustion. */
const ALL: Size[] = [];
for (let w = 64; w <= 2048; w += 16) for (let h = 64; h <= 2048; h += 16) if (w * h <= 1024 * 1024) ALL.push({ width: w, height: h });

describe('aspect ratios (contract §3)', () => {
  it('the table is the contract table, in its order, plus match_input_image', () => {
    assert.deepEqual([...NAMED_ASPECT_RATIOS], CONTRACT_TABLE.map((r) => r[0]));
    assert.deepEqual(Object.keys(ASPECT_RATIOS), CONTRACT_TABLE.map((r) => r[0]));
    assert.deepEqual([...ASPECT_RATIO_NAMES], [...CONTRACT_TABLE.map((r) => r[0]), 'match_input_image']);
    for (const [name, w, h] of CONTRACT_TABLE) assert.deepEqual(ASPECT_RATIOS[name as keyof typeof ASPECT_RATIOS], { width: w, height: h }, name);
  });

  it('the rule reproduces every row, MP (of 1024²) and ratio error columns included', () => {
    for (const [name, w, h, mp, errPct] of CONTRACT_TABLE) {
      const [a, b] = parse(name);
      const s = sizeForAspect(a, b);
      assert.deepEqual(s, { width: w, height: h }, name);
      assert.equal(((s.width * s.height) / MAX_AREA).toFixed(3), mp, `${name} MP`);
      const err = ratioError(s, a, b) * 100;
      assert.equal(errPct === '0' ? String(err) : err.toFixed(2), errPct, `${name} ratio error`);
    }
  });

  it('is the largest area within 1%, checked against every allowed size', () => {
    // Includes ratios where the widths next to r·h are not the best (2641:1000 → 1664×624,
    // 0.97% off, beats 1648×624): a search that only tries those would fail here.
    const ratios: Array<[number, number]> = [[2641, 1000], [3082, 1000], [1, 1], [4, 3], [16, 10], [1920, 1080], [1080, 1920], [3, 1], [8, 1], [1, 8], [7, 5], [2592, 1944]];
    for (const [a, b] of ratios) {
      const s = sizeForAspect(a, b);
      const within = ALL.filter((c) => 100 * Math.abs(c.width * b - c.height * a) <= c.height * a);
      const maxArea = Math.max(...within.map((c) => c.width * c.height));
      assert.ok(within.length > 0, `${a}:${b}`);
      assert.equal(s.width * s.height, maxArea, `${a}:${b} → ${s.width}×${s.height}`);
      assert.ok(ratioError(s, a, b) <= 0.01);
      assert.ok(valid(s));
    }
    assert.deepEqual(sizeForAspect(2641, 1000), { width: 1664, height: 624 });
  });

  it('match_input_image sizes for common and extreme ratios', () => {
    const expect: Array<[number, number, number, number]> = [
      [1, 8, 256, 2048],
      [8, 1, 2048, 256],
      [1, 1, 1024, 1024],
      [1920, 1080, 1360, 768],
      [1080, 1920, 768, 1360],
      [4032, 3024, 1184, 880],
    ];
    for (const [a, b, w, h] of expect) assert.deepEqual(sizeForAspect(a, b), { width: w, height: h }, `${a}:${b}`);
    assert.deepEqual(sizeForRatio(8), { width: 2048, height: 256 });
    assert.deepEqual(sizeForRatio(1 / 8), { width: 256, height: 2048 });
  });

  it('always returns a valid size; beyond what 1% allows, the closest ratio', () => {
    for (let i = 0; i <= 400; i++) {
      const r = Math.exp(Math.log(1 / 8) + (i / 400) * Math.log(64)); // 1:8 … 8:1
      const s = sizeForRatio(r);
      assert.ok(valid(s), `${r}`);
      assert.ok(ratioError(s, r, 1) <= 0.01, `${r} → ${s.width}×${s.height}`);
    }
    // 40:1 and 1:40 cannot be met within 1%: the most elongated sizes are the closest.
    assert.deepEqual(sizeForRatio(40), { width: 2048, height: 64 });
    assert.deepEqual(sizeForRatio(1 / 40), { width: 64, height: 2048 });
    assert.deepEqual(sizeForRatio(1e9), { width: 2048, height: 64 });
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => sizeForRatio(bad), RangeError);
  });

  it('is deterministic', () => {
    for (const [a, b] of [[3, 2], [1234, 567], [1, 7]] as const) assert.deepEqual(sizeForAspect(a, b), sizeForAspect(a, b));
  });
});
