/** The generation parameters written into each output (PNG text chunk, EXIF); see encode.ts. */
import type { ResolvedParams } from '../contract/types.js';

/** The generation parameters written into the image (PNG text chunk, EXIF). */
export function generationMetadata(model: string, p: ResolvedParams, seed: number): Record<string, string> {
  return {
    parameters: JSON.stringify({
      model,
      prompt: p.prompt,
      negative_prompt: p.cfg > 1 ? p.negative_prompt : undefined,
      seed,
      cfg: p.cfg,
      sampler: p.sampler,
      steps: p.steps,
      width: p.width,
      height: p.height,
      go_fast: p.go_fast,
      reference_images: p.image_urls.length,
    }),
    software: 'klein-serve',
  };
}
