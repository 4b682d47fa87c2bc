/**
 * The body of POST /v1/flux-2-klein-4b (contract §1), as one TypeBox schema: the source of
 * the validator's ranges, enums and defaults (validate.ts), the TypeScript type, and the
 * OpenAPI document. Descriptions follow Segmind's page; extensions are marked.
 */
import Type, { type Static } from 'typebox';
import { ASPECT_RATIO_NAMES } from './aspect-ratios.js';

export const DEFAULTS = {
  image_urls: [] as string[],
  negative_prompt: 'low quality, blurry, less details',
  seed: 3425234,
  cfg: 5,
  sampler: 'euler',
  steps: 20,
  aspect_ratio: '1:1',
  go_fast: true,
  image_format: 'png',
  quality: 90,
  base64: false,
} as const;

export const MAX_PROMPT = 10_000;
export const MAX_IMAGES = 4;
export const MAX_SEED = 2 ** 53 - 1;
export const MAX_PIXELS = 4_194_304;

export const GenerateBody = Type.Object(
  {
    prompt: Type.String({ description: 'Prompt describing the image to generate', minLength: 1, maxLength: MAX_PROMPT }),
    image_urls: Type.Array(Type.String({ maxLength: 30_000_000 }), {
      description: 'Reference images (https://, http:// or data:image/(png|jpeg|webp);base64,…); empty for text-to-image',
      maxItems: MAX_IMAGES,
      default: DEFAULTS.image_urls,
    }),
    negative_prompt: Type.String({ description: 'Negative prompt to avoid certain elements (used when cfg > 1)', maxLength: MAX_PROMPT, default: DEFAULTS.negative_prompt }),
    seed: Type.Integer({ description: 'Random seed for reproducibility; -1 picks a random seed (extension)', minimum: -1, maximum: MAX_SEED, default: DEFAULTS.seed }),
    cfg: Type.Number({ description: 'Classifier-free guidance scale', minimum: 1, maximum: 20, default: DEFAULTS.cfg }),
    sampler: Type.Union([Type.Literal('euler'), Type.Literal('res_2s')], { description: 'Sampling method', default: DEFAULTS.sampler }),
    steps: Type.Integer({ description: 'Number of inference steps', minimum: 1, maximum: 100, default: DEFAULTS.steps }),
    aspect_ratio: Type.Union(ASPECT_RATIO_NAMES.map((n) => Type.Literal(n)), { description: 'Aspect ratio of the output image', default: DEFAULTS.aspect_ratio }),
    go_fast: Type.Boolean({ description: 'Enable fast generation mode', default: DEFAULTS.go_fast }),
    image_format: Type.Union([Type.Literal('png'), Type.Literal('jpeg'), Type.Literal('jpg'), Type.Literal('webp')], { description: 'Output image format', default: DEFAULTS.image_format }),
    quality: Type.Integer({ description: 'Output image quality (jpeg, webp)', minimum: 10, maximum: 100, default: DEFAULTS.quality }),
    width: Type.Integer({ description: 'Output width, a multiple of 16 (extension; with height, overrides aspect_ratio)', minimum: 64, maximum: 2048, multipleOf: 16 }),
    height: Type.Integer({ description: 'Output height, a multiple of 16 (extension; with width, overrides aspect_ratio)', minimum: 64, maximum: 2048, multipleOf: 16 }),
    base64: Type.Boolean({ description: 'Answer JSON with the image base64-encoded (extension)', default: DEFAULTS.base64 }),
  },
  { additionalProperties: false, required: ['prompt'] },
);

export const AsyncBody = Type.Object(
  {
    ...GenerateBody.properties,
    webhook_url: Type.String({ description: 'URL that receives one signed terminal event', maxLength: 2048 }),
  },
  { additionalProperties: false, required: ['prompt'] },
);

export type GenerateInput = Partial<Static<typeof AsyncBody>> & { prompt: string };
