/** Defaults, seed and size resolution: a validated body → ResolvedParams (contract §1, §3). */
import { ASPECT_RATIOS, sizeForRatio } from './aspect-ratios.js';
import { DEFAULTS, MAX_SEED, type GenerateInput } from './request-schema.js';
import type { ImageFormat, ResolvedParams, Sampler } from './types.js';

/**
 * @param refs the reference images' own sizes (after EXIF orientation), in order; the
 *   first one decides the size for `match_input_image`.
 * @param randomSeed draws a seed in 0…2^53−1 for `seed: -1`.
 */
export function resolveParams(input: GenerateInput, refs: Array<{ width: number; height: number }>, randomSeed: () => number): ResolvedParams {
  const aspect: string = input.aspect_ratio ?? DEFAULTS.aspect_ratio;
  let width: number;
  let height: number;
  if (input.width !== undefined && input.height !== undefined) {
    width = input.width;
    height = input.height;
  } else if (aspect === 'match_input_image') {
    const first = refs[0];
    if (!first) throw new Error('match_input_image without a reference image (validation should have refused it)');
    ({ width, height } = sizeForRatio(first.width / first.height));
  } else {
    const s = ASPECT_RATIOS[aspect];
    if (!s) throw new Error(`unknown aspect ratio ${aspect}`);
    ({ width, height } = s);
  }
  const seedIn = input.seed ?? DEFAULTS.seed;
  const seed = seedIn === -1 ? Math.min(MAX_SEED, Math.max(0, Math.floor(randomSeed()))) : seedIn;
  const fmt = input.image_format ?? DEFAULTS.image_format;
  return {
    prompt: input.prompt,
    negative_prompt: input.negative_prompt ?? DEFAULTS.negative_prompt,
    seed,
    cfg: input.cfg ?? DEFAULTS.cfg,
    sampler: (input.sampler ?? DEFAULTS.sampler) as Sampler,
    steps: input.steps ?? DEFAULTS.steps,
    aspect_ratio: aspect,
    width,
    height,
    go_fast: input.go_fast ?? DEFAULTS.go_fast,
    image_format: (fmt === 'jpg' ? 'jpeg' : fmt) as ImageFormat,
    quality: input.quality ?? DEFAULTS.quality,
    image_urls: input.image_urls ?? [],
    base64: input.base64 ?? DEFAULTS.base64,
  };
}
