/**
 * Is a safetensors header a LoRA, in which layout, and does it fit the model's Linear layers?
 * Read from the tensor names and shapes alone, before the body is downloaded.
 *
 * The layouts are the ones diffusers' Flux2LoraLoaderMixin.lora_state_dict takes
 * (diffusers 0.42 loaders/lora_pipeline.py, converters in loaders/lora_conversion_utils.py):
 *   - diffusers:  `transformer.<module>.lora_A.weight` / `.lora_B.weight` (loaded as is);
 *   - peft:       `base_model.model.<BFL module>.lora_A.weight` (renamed to `diffusion_model.`);
 *   - kohya:      `lora_unet_<module_with_underscores>.lora_down.weight` / `.lora_up.weight` /
 *                 `.alpha` (kohya sd-scripts and musubi-tuner; `_convert_kohya_flux2_lora_to_diffusers`);
 *   - ai-toolkit: `diffusion_model.double_blocks.…` / `diffusion_model.single_blocks.…` with
 *                 lora_A/lora_B or lora_down/lora_up (BFL names; `_convert_non_diffusers_flux2_lora_to_diffusers`);
 *   - comfyui:    the same BFL names with no prefix (`double_blocks.0.img_attn.qkv.lora_A.weight`);
 *                 diffusers has no converter of its own: the loader adds `diffusion_model.`;
 *   - lokr:       LyCORIS LoKr (`….lokr_w1`, `lokr_w2`, `lokr_w1_a`, …) in any of those
 *                 prefixes; reported as such so the caller accepts or refuses it. Its shapes
 *                 are Kronecker factors, so only dtypes are checked here.
 * A LoRA pair is A (down) r×in and B (up) out×r with the same r; every A has its B, every B
 * its A, and an alpha belongs to a pair.
 */
import type { SafetensorsHeader, TensorInfo } from './safetensors-header.js';
import { loraError } from './source.js';

export type LoraFormat = 'diffusers' | 'peft' | 'kohya' | 'ai-toolkit' | 'comfyui' | 'lokr';

/** The in_features and out_features of the model's Linear layers; null = unknown, not checked. */
export interface LinearDims {
  inputs: number[];
  outputs: number[];
}

export interface LoraCheck {
  format: LoraFormat;
  /** The largest rank of any pair (PEFT allows a rank per module); null for LoKr. */
  rank: number | null;
  /** How many tensors the file holds. */
  tensors: number;
  /** The whole file's size. */
  bytes: number;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

const PREFIXES: ReadonlyArray<{ prefix: string; format: Exclude<LoraFormat, 'lokr'> }> = [
  { prefix: 'transformer.', format: 'diffusers' },
  { prefix: 'base_model.model.', format: 'peft' },
  { prefix: 'lora_unet_', format: 'kohya' },
  { prefix: 'diffusion_model.', format: 'ai-toolkit' },
];

/** BFL's top-level module names, as a bare (ComfyUI) file starts them. */
const BFL_MODULE = /^(double_blocks|single_blocks|img_in|txt_in|time_in|guidance_in|final_layer|single_stream_modulation|double_stream_modulation_img|double_stream_modulation_txt)[._]/;

/** BFL's fused Q,K,V projection: its B is 3 × the model's q/k/v out_features (diffusers splits it in three). */
const FUSED_QKV = /(?:^|[._])(?:img|txt)_attn[._]qkv$/;

const LORA_WEIGHT = /^(.*)\.(lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight$/;
const LOKR_WEIGHT = /\.lokr_(?:w1|w2|w1_a|w1_b|w2_a|w2_b|t1|t2)$/;

function formatOf(name: string): Exclude<LoraFormat, 'lokr'> | null {
  for (const p of PREFIXES) if (name.startsWith(p.prefix)) return p.format;
  return BFL_MODULE.test(name) ? 'comfyui' : null;
}

function listDims(dims: number[]): string {
  const sorted = [...new Set(dims)].sort((a, b) => a - b);
  return sorted.length > 8 ? `${sorted.slice(0, 8).join(', ')}, …` : sorted.join(', ');
}

/**
 * Checks a header; refusals are invalid_lora naming `field` and saying which tensor and why.
 * `dims` null skips the model fit (the model's layers are not known).
 */
export function checkLora(header: SafetensorsHeader, dims: LinearDims | null, field: string): LoraCheck {
  const refuse = (why: string) => loraError(field, why);
  const { tensors } = header;
  if (tensors.length === 0) throw refuse('holds no tensors: not a LoRA');

  for (const t of tensors) {
    if (!FLOAT_DTYPES.has(t.dtype)) throw refuse(`${t.name} is ${t.dtype}; LoRA weights must be F32, F16 or BF16`);
  }
  const dora = tensors.find((t) => t.name.includes('dora_scale') || t.name.includes('lora_magnitude_vector'));
  if (dora) throw refuse(`${dora.name}: DoRA adapters are not supported`);
  const loha = tensors.find((t) => /\.hada_/.test(t.name));
  if (loha) throw refuse(`${loha.name}: LoHa adapters are not supported`);

  if (tensors.some((t) => LOKR_WEIGHT.test(t.name))) {
    const other = tensors.find((t) => !LOKR_WEIGHT.test(t.name) && !t.name.endsWith('.alpha'));
    if (other) throw refuse(`${other.name} is neither a LoKr factor nor an alpha, in a LoKr file`);
    return { format: 'lokr', rank: null, tensors: tensors.length, bytes: header.fileBytes };
  }

  // Group the tensors by module: each module is one LoRA pair (and maybe an alpha).
  const modules = new Map<string, { a?: TensorInfo; b?: TensorInfo; alpha?: TensorInfo }>();
  for (const t of tensors) {
    const w = LORA_WEIGHT.exec(t.name);
    const module = w ? w[1]! : t.name.endsWith('.alpha') ? t.name.slice(0, -'.alpha'.length) : null;
    if (module === null) throw refuse(`${t.name} is not a LoRA weight (lora_A/lora_B, lora_down/lora_up) or an alpha`);
    const entry = modules.get(module) ?? {};
    const role = !w ? 'alpha' : w[2] === 'lora_A' || w[2] === 'lora_down' ? 'a' : 'b';
    if (entry[role]) throw refuse(`${t.name} repeats ${module}'s ${role === 'alpha' ? 'alpha' : role === 'a' ? 'down (A)' : 'up (B)'} weight`);
    entry[role] = t;
    modules.set(module, entry);
  }

  let format: Exclude<LoraFormat, 'lokr'> | null = null;
  let rank = 0;
  for (const [module, { a, b, alpha }] of modules) {
    const f = formatOf(module);
    if (f === null) throw refuse(`${(a ?? b ?? alpha)!.name} is not a tensor of this model's transformer (not a known LoRA layout)`);
    if (format !== null && f !== format) throw refuse(`mixes layouts: ${(a ?? b ?? alpha)!.name} is ${f}, earlier tensors are ${format}`);
    format = f;
    if (!a || !b) throw refuse(`${module} has ${a ? 'a down (A) weight but no up (B)' : b ? 'an up (B) weight but no down (A)' : 'an alpha but no weights'}`);
    if (a.shape.length !== 2) throw refuse(`${a.name} has shape [${a.shape.join(', ')}]; a LoRA weight of a Linear layer is 2-dimensional`);
    if (b.shape.length !== 2) throw refuse(`${b.name} has shape [${b.shape.join(', ')}]; a LoRA weight of a Linear layer is 2-dimensional`);
    const [r, inFeatures] = a.shape as [number, number];
    const [outFeatures, rb] = b.shape as [number, number];
    if (r === 0) throw refuse(`${a.name} has rank 0`);
    if (rb !== r) throw refuse(`${b.name} has rank ${rb} but ${a.name} has rank ${r}`);
    if (alpha && alpha.shape.reduce((x, y) => x * y, 1) !== 1) throw refuse(`${alpha.name} is not a single number`);
    rank = Math.max(rank, r);
    if (dims) {
      if (!dims.inputs.includes(inFeatures)) {
        throw refuse(`${a.name} takes ${inFeatures} inputs; this model's layers take ${listDims(dims.inputs)}`);
      }
      const fused = (f === 'ai-toolkit' || f === 'peft' || f === 'comfyui' || f === 'kohya') && FUSED_QKV.test(module);
      const out = fused ? outFeatures / 3 : outFeatures;
      if (!Number.isInteger(out) || !dims.outputs.includes(out)) {
        const what = fused ? `gives ${outFeatures} outputs (a fused Q,K,V: 3 × ${fused && Number.isInteger(out) ? out : outFeatures / 3})` : `gives ${outFeatures} outputs`;
        throw refuse(`${b.name} ${what}; this model's layers give ${listDims(dims.outputs)}`);
      }
    }
  }
  return { format: format!, rank, tensors: tensors.length, bytes: header.fileBytes };
}
