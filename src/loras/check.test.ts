/**
 * Each layout is recognised from a small generated safetensors file; ranks, pairs and dtypes
 * are checked; a LoRA whose shapes do not fit the model's Linear layers is refused with the
 * tensor and the reason; LoKr is reported as such.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../contract/errors.js';
import { checkLora, type LinearDims } from './check.js';
import { parseHeader, type SafetensorsHeader } from './safetensors-header.js';
import { pair, safetensors, type TensorSpec } from '../../test/support/safetensors-files.js';

const field = 'loras[0].path';

/** klein 4B's Linear in/out features: hidden 3072, SwiGLU MLP 9216 (linear_in gives 2 × 9216), the single blocks' fused projections. */
const KLEIN_4B: LinearDims = { inputs: [3072, 9216, 12288], outputs: [3072, 18432, 27648] };

function header(tensors: Record<string, TensorSpec>): SafetensorsHeader {
  const file = safetensors(tensors);
  const n = Number(file.readBigUInt64LE(0));
  return parseHeader(file.subarray(8, 8 + n), { field, maxBytes: 2 ** 31 }, file.length);
}

function refusal(tensors: Record<string, TensorSpec>, dims: LinearDims | null = KLEIN_4B): string {
  try {
    checkLora(header(tensors), dims, field);
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.code, 'invalid_lora');
    assert.equal(err.details?.[0]?.field, field);
    return err.message;
  }
  assert.fail('not refused');
}

describe('checkLora recognises each layout', () => {
  it('diffusers: transformer.….lora_A/lora_B', () => {
    const h = header({
      ...pair('transformer.transformer_blocks.0.attn.to_q', 'lora_A', 4, 3072, 3072),
      ...pair('transformer.single_transformer_blocks.0.attn.to_out', 'lora_A', 4, 12288, 3072),
    });
    assert.deepEqual(checkLora(h, KLEIN_4B, field), { format: 'diffusers', rank: 4, tensors: 4, bytes: h.fileBytes });
  });

  it('peft: base_model.model.<BFL names>, a fused qkv B being 3 × the q/k/v outputs', () => {
    const r = checkLora(header(pair('base_model.model.double_blocks.0.img_attn.qkv', 'lora_A', 8, 3072, 9216)), KLEIN_4B, field);
    assert.equal(r.format, 'peft');
    assert.equal(r.rank, 8);
  });

  it('kohya / musubi-tuner: lora_unet_…lora_down/lora_up with alpha', () => {
    const r = checkLora(
      header({
        ...pair('lora_unet_double_blocks_0_img_attn_qkv', 'lora_down', 16, 3072, 9216, 'F16'),
        'lora_unet_double_blocks_0_img_attn_qkv.alpha': { dtype: 'F32', shape: [] },
        ...pair('lora_unet_single_blocks_0_linear2', 'lora_down', 16, 12288, 3072, 'F16'),
      }),
      KLEIN_4B,
      field,
    );
    assert.deepEqual([r.format, r.rank, r.tensors], ['kohya', 16, 5]);
  });

  it('ai-toolkit / BFL: diffusion_model.double_blocks… and single_blocks…', () => {
    const r = checkLora(
      header({
        ...pair('diffusion_model.double_blocks.0.img_attn.qkv', 'lora_A', 4, 3072, 9216),
        ...pair('diffusion_model.double_blocks.0.img_mlp.0', 'lora_A', 4, 3072, 18432),
        ...pair('diffusion_model.single_blocks.0.linear1', 'lora_A', 4, 3072, 27648, 'F32'),
      }),
      KLEIN_4B,
      field,
    );
    assert.deepEqual([r.format, r.rank], ['ai-toolkit', 4]);
  });

  it('ComfyUI: the BFL names bare', () => {
    const r = checkLora(header({ ...pair('double_blocks.0.txt_attn.proj', 'lora_A', 2, 3072, 3072), ...pair('single_blocks.3.linear2', 'lora_A', 2, 12288, 3072) }), KLEIN_4B, field);
    assert.equal(r.format, 'comfyui');
  });

  it('LoKr, by its factors', () => {
    const r = checkLora(
      header({
        'diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1': { dtype: 'BF16', shape: [4, 4] },
        'diffusion_model.double_blocks.0.img_attn.qkv.lokr_w2': { dtype: 'BF16', shape: [2304, 768] },
        'diffusion_model.double_blocks.0.img_attn.qkv.alpha': { dtype: 'BF16', shape: [] },
      }),
      KLEIN_4B,
      field,
    );
    assert.deepEqual([r.format, r.rank, r.tensors], ['lokr', null, 3]);
  });

  it('skips the model fit when the dims are unknown', () => {
    assert.equal(checkLora(header(pair('transformer.x', 'lora_A', 4, 4096, 4096)), null, field).format, 'diffusers');
  });
});

describe('checkLora refuses, saying which tensor and why', () => {
  it('an A whose inputs no layer of the model takes', () => {
    assert.equal(
      refusal(pair('transformer.single_transformer_blocks.0.attn.to_out', 'lora_A', 4, 4096, 3072)),
      `${field}: transformer.single_transformer_blocks.0.attn.to_out.lora_A.weight takes 4096 inputs; this model's layers take 3072, 9216, 12288`,
    );
  });

  it('a B whose outputs no layer gives, and a fused qkv of another width', () => {
    assert.match(refusal(pair('transformer.transformer_blocks.0.attn.to_q', 'lora_A', 4, 3072, 4096)), /to_q\.lora_B\.weight gives 4096 outputs; this model's layers give 3072, 18432, 27648/);
    assert.match(refusal(pair('diffusion_model.double_blocks.0.img_attn.qkv', 'lora_A', 4, 3072, 12288)), /qkv\.lora_B\.weight gives 12288 outputs \(a fused Q,K,V: 3 × 4096\)/);
  });

  it('ranks that differ within a pair, a pair missing its half, an alpha alone', () => {
    assert.match(
      refusal({ 'transformer.a.lora_A.weight': { dtype: 'BF16', shape: [4, 3072] }, 'transformer.a.lora_B.weight': { dtype: 'BF16', shape: [3072, 8] } }),
      /transformer\.a\.lora_B\.weight has rank 8 but transformer\.a\.lora_A\.weight has rank 4/,
    );
    assert.match(refusal({ 'transformer.a.lora_A.weight': { dtype: 'BF16', shape: [4, 3072] } }), /transformer\.a has a down \(A\) weight but no up \(B\)/);
    assert.match(refusal({ 'lora_unet_x.alpha': { dtype: 'F32', shape: [] } }), /an alpha but no weights/);
  });

  it('non-float dtypes', () => {
    assert.match(refusal({ ...pair('transformer.a', 'lora_A', 4, 3072, 3072), 'transformer.b.lora_A.weight': { dtype: 'I32', shape: [4, 3072] } }), /transformer\.b\.lora_A\.weight is I32; LoRA weights must be F32, F16 or BF16/);
  });

  it('a model checkpoint (not a LoRA), another model\'s LoRA, mixed layouts, DoRA, a conv LoRA', () => {
    assert.match(refusal({ 'transformer.x_embedder.weight': { dtype: 'BF16', shape: [3072, 128] } }), /is not a LoRA weight/);
    assert.match(refusal(pair('unet.down_blocks.0.attn.to_q', 'lora_A', 4, 3072, 3072)), /not a tensor of this model's transformer/);
    assert.match(refusal({ ...pair('transformer.a', 'lora_A', 4, 3072, 3072), ...pair('diffusion_model.double_blocks.0.img_mlp.2', 'lora_A', 4, 9216, 3072) }), /mixes layouts/);
    assert.match(refusal({ ...pair('lora_unet_a', 'lora_down', 4, 3072, 3072), 'lora_unet_a.dora_scale': { dtype: 'F32', shape: [1, 3072] } }), /DoRA/);
    assert.match(refusal({ 'transformer.a.lora_A.weight': { dtype: 'F32', shape: [4, 3072, 1, 1] }, 'transformer.a.lora_B.weight': { dtype: 'F32', shape: [3072, 4, 1, 1] } }), /2-dimensional/);
  });
});
