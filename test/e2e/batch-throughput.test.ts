/**
 * Batching pays on the embedded server: with the simulated engine costing a + b·n per
 * evaluation of a batch of n (60 + 40·n ms here), KLEIN_MAX_BATCH=4 serves the same
 * requests faster than 1 (ideally 1.82×). Measured as a ratio within one run
 * (bench/throughput.ts; the README reports a full run, embedded and in a fleet); the bound
 * is loose, since a busy machine adds the same gateway time to both.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ideal, measureEmbedded } from '../../bench/throughput.js';

it('KLEIN_MAX_BATCH=4 serves compatible requests at least 1.25× as fast as 1', async () => {
  const o = { jobs: 24, steps: 2, cost: '60+40' };
  const one = await measureEmbedded({ ...o, maxBatch: 1 });
  const four = await measureEmbedded({ ...o, maxBatch: 4 });
  assert.equal(one.mean_batch, 1);
  assert.ok(four.mean_batch > 1.5, `mean batch ${four.mean_batch}`);
  const ratio = four.images_per_s / one.images_per_s;
  const best = ideal(o.cost, o.steps, 4) / ideal(o.cost, o.steps, 1);
  assert.ok(ratio >= 1.25 && ratio <= best * 1.5, `batch 4: ${four.images_per_s.toFixed(2)}/s, batch 1: ${one.images_per_s.toFixed(2)}/s, ratio ${ratio.toFixed(2)} (ideal ${best.toFixed(2)})`);
});
