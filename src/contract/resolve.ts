/**
 * A validated body → the parameters a job runs with (contract §1, §3): defaults applied,
 * `jpg` → `jpeg`, seed −1 replaced by a random seed, and the output size decided:
 * explicit width/height, else the aspect-ratio table, else (`match_input_image`) the
 * rule of aspect-ratios.ts applied to the first reference image's own ratio.
 */
import { randomInt } from 'node:crypto';
import { ASPECT_RATIOS, MATCH_INPUT_IMAGE, isNamedAspectRatio, sizeForAspect, type Size } from './aspect-ratios.js';
import { DEFAULT_LORA_SCALE, DEFAULTS, JPEG_ALIAS, MAX_SEED, RANDOM_SEED, type GenerateInput } from './request-schema.js';
import type { ImageFormat, ResolvedParams } from './types.js';
import { VARIANT_DEFAULTS, type ModelDefaults } from './models.js';

/**
 * A uniform integer in 0…2^53−1 from the CSPRNG. `crypto.randomInt` takes ranges below
 * 2^48, so two draws (26 + 27 bits) make the 53.
 */
export function randomSeed(): number {
  return randomInt(0, 2 ** 26) * 2 ** 27 + randomInt(0, 2 ** 27);
}

/**
 * True when the output size depends on the first reference image (`match_input_image`
 * without an explicit width/height): the caller must decode it before resolving.
 */
export function needsReferenceSize(input: GenerateInput): boolean {
  return input.aspect_ratio === MATCH_INPUT_IMAGE && (input.width === undefined || input.height === undefined);
}

function outputSize(input: GenerateInput, aspect: string, refs: readonly Size[]): Size {
  if (input.width !== undefined && input.height !== undefined) return { width: input.width, height: input.height };
  if (aspect === MATCH_INPUT_IMAGE) {
    const first = refs[0];
    if (!first) throw new Error('match_input_image needs the first reference image size (validation requires an image)');
    return sizeForAspect(first.width, first.height);
  }
  if (!isNamedAspectRatio(aspect)) throw new Error(`unknown aspect_ratio ${aspect} (validation should have refused it)`);
  const { width, height } = ASPECT_RATIOS[aspect];
  return { width, height };
}

/**
 * @param input a body accepted by validateGenerateBody.
 * @param refs the reference images' own sizes (EXIF orientation applied), in order; only
 *   the first is read, and only when needsReferenceSize(input).
 * @param random draws the seed for `seed: -1`; must return an integer in 0…2^53−1
 *   (randomSeed by default). Anything else is a bug and throws.
 * @param defaults the served model's steps and cfg (contract §6: they follow its variant).
 */
export function resolveParams(
  input: GenerateInput,
  refs: readonly Size[],
  random: () => number = randomSeed,
  defaults: Readonly<ModelDefaults> = VARIANT_DEFAULTS.distilled,
): ResolvedParams {
  const aspect: string = input.aspect_ratio ?? DEFAULTS.aspect_ratio;
  const { width, height } = outputSize(input, aspect, refs);
  let seed = input.seed ?? DEFAULTS.seed;
  if (seed === RANDOM_SEED) {
    seed = random();
    if (!Number.isSafeInteger(seed) || seed < 0 || seed > MAX_SEED) throw new RangeError(`random seed must be an integer in 0…${MAX_SEED}, got ${seed}`);
  }
  const format = input.image_format ?? DEFAULTS.image_format;
  return {
    prompt: input.prompt,
    negative_prompt: input.negative_prompt ?? DEFAULTS.negative_prompt,
    seed,
    cfg: input.cfg ?? defaults.cfg,
    sampler: input.sampler ?? DEFAULTS.sampler,
    steps: input.steps ?? defaults.steps,
    aspect_ratio: aspect,
    width,
    height,
    go_fast: input.go_fast ?? DEFAULTS.go_fast,
    image_format: (format === JPEG_ALIAS ? 'jpeg' : format) as ImageFormat,
    quality: input.quality ?? DEFAULTS.quality,
    image_urls: [...(input.image_urls ?? DEFAULTS.image_urls)],
    base64: input.base64 ?? DEFAULTS.base64,
    loras: (input.loras ?? []).map((l) => ({ path: l.path, ...(l.weight_name !== undefined ? { weight_name: l.weight_name } : {}), scale: l.scale ?? DEFAULT_LORA_SCALE })),
  };
}
