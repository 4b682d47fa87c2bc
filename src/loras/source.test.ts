/**
 * A LoRA's `path` is read as a URL, a hub repo id or a bare file name in KLEIN_LORA_DIR;
 * anything that could climb out of the directory, or is none of the three, is refused with
 * the field named.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../contract/errors.js';
import { parseLoraSource, sourceHeaders, sourceKey } from './source.js';

const opts = { loraDir: '/srv/loras' };

function refusal(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    return err;
  }
  assert.fail('not refused');
}

describe('parseLoraSource', () => {
  it('reads an https URL', () => {
    const s = parseLoraSource({ path: 'https://v3.fal.media/files/x/pytorch_lora_weights.safetensors' }, 0, opts);
    assert.deepEqual(s, { kind: 'url', url: 'https://v3.fal.media/files/x/pytorch_lora_weights.safetensors', field: 'loras[0].path' });
  });

  it('reads a hub repo id with the default weight name, a weight_name in a subfolder, and a revision', () => {
    const a = parseLoraSource({ path: 'fal/klein-4b-style' }, 1, opts);
    assert.equal(a.kind, 'hub');
    assert.equal(a.kind === 'hub' && a.url, 'https://huggingface.co/fal/klein-4b-style/resolve/main/pytorch_lora_weights.safetensors');
    const b = parseLoraSource({ path: 'fal/klein-4b-style@refs/pr/3', weight_name: 'v2/my lora.safetensors' }, 0, opts);
    assert.equal(b.kind === 'hub' && b.url, 'https://huggingface.co/fal/klein-4b-style/resolve/refs%2Fpr%2F3/v2/my%20lora.safetensors');
    assert.notEqual(sourceKey(a), sourceKey(b));
  });

  it('sends HF_TOKEN to the hub only', () => {
    const hub = parseLoraSource({ path: 'o/n' }, 0, opts);
    const url = parseLoraSource({ path: 'https://example.com/a.safetensors' }, 0, opts);
    assert.deepEqual(sourceHeaders(hub, 'hf_x'), { authorization: 'Bearer hf_x' });
    assert.deepEqual(sourceHeaders(hub, undefined), {});
    assert.deepEqual(sourceHeaders(url, 'hf_x'), {});
  });

  it('reads a bare file name in KLEIN_LORA_DIR', () => {
    const s = parseLoraSource({ path: 'anime.safetensors' }, 2, opts);
    assert.deepEqual(s, { kind: 'dir', name: 'anime.safetensors', file: '/srv/loras/anime.safetensors', field: 'loras[2].path' });
  });

  for (const path of ['../etc/passwd.safetensors', '../../x.safetensors', '/etc/x.safetensors', 'sub/../x.safetensors', '..', '.hidden.safetensors', 'a\\..\\b.safetensors', 'x\0.safetensors', 'a/b/c.safetensors']) {
    it(`refuses ${JSON.stringify(path)} as invalid_lora naming the field`, () => {
      const err = refusal(() => parseLoraSource({ path }, 1, opts));
      assert.equal(err.code, 'invalid_lora');
      assert.equal(err.details?.[0]?.field, 'loras[1].path');
    });
  }

  it('refuses a weight_name that climbs out of the repo, or is not .safetensors', () => {
    for (const weight_name of ['../x.safetensors', '/x.safetensors', 'a//b.safetensors', 'model.bin']) {
      const err = refusal(() => parseLoraSource({ path: 'o/n', weight_name }, 0, opts));
      assert.equal(err.code, 'invalid_lora');
      assert.equal(err.details?.[0]?.field, 'loras[0].weight_name');
    }
  });

  it('refuses a weight_name beside a URL or a directory file', () => {
    assert.equal(refusal(() => parseLoraSource({ path: 'https://e.com/a.safetensors', weight_name: 'b.safetensors' }, 0, opts)).details?.[0]?.field, 'loras[0].weight_name');
    assert.equal(refusal(() => parseLoraSource({ path: 'a.safetensors', weight_name: 'b.safetensors' }, 0, opts)).details?.[0]?.field, 'loras[0].weight_name');
  });

  it('refuses a file name that is not .safetensors, and any file name when KLEIN_LORA_DIR is unset', () => {
    assert.equal(refusal(() => parseLoraSource({ path: 'x.ckpt' }, 0, opts)).code, 'invalid_lora');
    assert.match(refusal(() => parseLoraSource({ path: 'x.safetensors' }, 0, {})).message, /KLEIN_LORA_DIR/);
  });

  it('judges other schemes and credentials as the SSRF guard does: url_blocked', () => {
    assert.equal(refusal(() => parseLoraSource({ path: 'file:///etc/x.safetensors' }, 0, opts)).code, 'url_blocked');
    assert.equal(refusal(() => parseLoraSource({ path: 'https://u:p@e.com/a.safetensors' }, 0, opts)).code, 'url_blocked');
  });

  it('refuses repo ids the hub would refuse', () => {
    for (const path of ['-o/n', 'o/n-', 'o--x/n', 'o/n@', 'o/n@../x', `${'a'.repeat(60)}/${'b'.repeat(40)}`]) {
      assert.equal(refusal(() => parseLoraSource({ path }, 0, opts)).code, 'invalid_lora', path);
    }
  });
});
