import assert from 'node:assert/strict';
import { it } from 'node:test';
import { resolveParams } from '../contract/resolve.js';
import { batchKey } from './batching.js';

const base = { prompt: 'p', width: 64, height: 64, steps: 2, cfg: 1 };
const key = (extra: Record<string, unknown>) => batchKey(resolveParams({ ...base, ...extra } as never, [], () => 1));

it('lets requests share a batch only with the same LoRA adapters at the same scales, in the same order', () => {
  const a = { path: 'https://h/a.safetensors', scale: 0.8 };
  const b = { path: 'owner/repo', weight_name: 'w.safetensors' };
  assert.equal(key({ prompt: 'one' }), key({ prompt: 'two', seed: 9 }), 'prompts and seeds may differ');
  assert.equal(key({ loras: [a, b] }), key({ prompt: 'other', loras: [a, { ...b, scale: 1 }] }), 'scale 1 is the default');
  assert.notEqual(key({ loras: [a] }), key({}), 'an adapter or none');
  assert.notEqual(key({ loras: [a] }), key({ loras: [{ ...a, scale: 0.9 }] }), 'another scale');
  assert.notEqual(key({ loras: [a, b] }), key({ loras: [b, a] }), 'another order');
  assert.notEqual(key({ loras: [b] }), key({ loras: [{ ...b, weight_name: 'other.safetensors' }] }), 'another file of the repo');
  assert.equal(key({ go_fast: false, loras: [a] }), null, 'the reference path runs alone');
});
