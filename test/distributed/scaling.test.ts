/**
 * Scaling: with a simulated engine of fixed GPU time, three workers give at least 2.7×
 * the throughput of one (bench/fleet.ts measures it; the README reports a full run).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { scaling } from '../../bench/fleet.js';

it('three workers serve at least 2.7× the requests per second of one', async () => {
  const r = await scaling({ workers: 3, jobsPerWorker: 10, msPerEval: 100, steps: 5 });
  assert.ok(r.ratio >= 2.7, `3 workers: ${r.many.images_per_s.toFixed(3)}/s, 1 worker: ${r.one.images_per_s.toFixed(3)}/s, ratio ${r.ratio.toFixed(2)}`);
});
