/**
 * The body of POST /v1/flux-2-klein-4b (contract §1) as one plain TypeBox object schema:
 * the route's runtime check (compiled by validate.ts), the TypeScript type (`Static`) and
 * the OpenAPI component `GenerateBody` (its `$id`). Descriptions are Segmind's page's own
 * words (shared/seed-segmind-flux-2-klein-4b.txt), with our rules and extensions appended.
 *
 * What JSON Schema cannot say is either a refinement of the field, run by the same compiled
 * validator (string-schemas.ts: well-formed text, URLs that parse), or a rule across fields in
 * validate.ts (`match_input_image` needs an image; width × height ≤ MAX_PIXELS, which the
 * 2048 side limit already implies: 2048² = 4,194,304). The descriptions say both.
 */
import Type, { type Static } from 'typebox';
import { ASPECT_RATIO_NAMES, MAX_SIDE, MIN_SIDE, SIZE_MULTIPLE } from './aspect-ratios.js';
import { IMAGE_FORMATS, SAMPLERS } from './types.js';
import { Choice, IMAGE_URL_MESSAGE, ImageUrl, Text, WEBHOOK_URL_MESSAGE, WebhookUrl } from './string-schemas.js';
import { VARIANT_DEFAULTS, type Variant } from './models.js';

/** The defaults of contract §1 (the seed page's example body, plus our extensions). */
export const DEFAULT_IMAGE_URLS: readonly string[] = Object.freeze([]);
export const DEFAULT_NEGATIVE_PROMPT = 'low quality, blurry, less details';
export const DEFAULT_SEED = 3425234;
export const DEFAULT_CFG = VARIANT_DEFAULTS.distilled.cfg;
export const DEFAULT_SAMPLER = 'euler';
export const DEFAULT_STEPS = VARIANT_DEFAULTS.distilled.steps;
export const DEFAULT_ASPECT_RATIO = '1:1';
export const DEFAULT_GO_FAST = true;
export const DEFAULT_IMAGE_FORMAT = 'png';
export const DEFAULT_QUALITY = 90;
export const DEFAULT_BASE64 = false;

/** All defaults by field name. */
export const DEFAULTS = {
  image_urls: DEFAULT_IMAGE_URLS,
  negative_prompt: DEFAULT_NEGATIVE_PROMPT,
  seed: DEFAULT_SEED,
  cfg: DEFAULT_CFG,
  sampler: DEFAULT_SAMPLER,
  steps: DEFAULT_STEPS,
  aspect_ratio: DEFAULT_ASPECT_RATIO,
  go_fast: DEFAULT_GO_FAST,
  image_format: DEFAULT_IMAGE_FORMAT,
  quality: DEFAULT_QUALITY,
  base64: DEFAULT_BASE64,
} as const;

/** LoRA adapters a request may carry (contract §7), and the range of their scales. */
export const MAX_LORAS = 3;
export const MAX_LORA_SCALE = 4;
export const DEFAULT_LORA_SCALE = 1;
export const MAX_LORA_PATH_LENGTH = 2048;

/** Prompt and negative prompt, in characters (Unicode code points, as JSON Schema counts). */
export const MAX_PROMPT = 10_000;
export const MAX_IMAGES = 4;
/** A data: URI of a 20 MB image is ~27 MB of base64; the byte cap itself is the image loader's. */
export const MAX_IMAGE_URL_LENGTH = 30_000_000;
export const MAX_WEBHOOK_URL_LENGTH = 2048;
export const MAX_SEED = Number.MAX_SAFE_INTEGER; // 2^53 − 1
export const RANDOM_SEED = -1;
export const MIN_CFG = 1;
export const MAX_CFG = 20;
export const MIN_STEPS = 1;
export const MAX_STEPS = 100;
export const MIN_QUALITY = 10;
export const MAX_QUALITY = 100;
export const MAX_PIXELS = 4_194_304;
/** Accepted for `image_format`, and resolved to `jpeg`. */
export const JPEG_ALIAS = 'jpg';

/** http://, https:// or one of the three image data: URIs (lower case, as the loader parses them). */
export const IMAGE_URL_PATTERN = '^(https?://|data:image/(png|jpeg|webp);base64,)';
export const WEBHOOK_URL_PATTERN = '^https?://';
/** A prompt needs one character that is not white space. */
export const NON_BLANK_PATTERN = '\\S';

/** What a failed `pattern` means, as the contract's message (validate.ts); others say "must match …". */
export const PATTERN_MESSAGES: Readonly<Record<string, string>> = {
  [IMAGE_URL_PATTERN]: IMAGE_URL_MESSAGE,
  [WEBHOOK_URL_PATTERN]: WEBHOOK_URL_MESSAGE,
  [NON_BLANK_PATTERN]: 'must not be empty',
};

/** The fields of a generation body, each with its rules (reused by the OpenAI routes' schema). */
export const GENERATE_PROPERTIES = {
  prompt: Text({
    description: `Prompt describing the image to generate. Must contain a non-space character; at most ${MAX_PROMPT} characters of well-formed Unicode.`,
    minLength: 1,
    maxLength: MAX_PROMPT,
    pattern: NON_BLANK_PATTERN,
  }),
  image_urls: Type.Optional(
    Type.Array(ImageUrl({ maxLength: MAX_IMAGE_URL_LENGTH, pattern: IMAGE_URL_PATTERN }), {
      description: `Add a reference image or leave blank for original ideas (text to image mode). 0 to ${MAX_IMAGES} entries, each https://… or http://… with a host, or data:image/(png|jpeg|webp);base64,… with its bytes`,
      maxItems: MAX_IMAGES,
      default: [],
    }),
  ),
  negative_prompt: Type.Optional(
    Text({
      description: `Negative prompt to avoid certain elements. Used only when cfg > 1; at most ${MAX_PROMPT} characters of well-formed Unicode.`,
      maxLength: MAX_PROMPT,
      default: DEFAULT_NEGATIVE_PROMPT,
    }),
  ),
  seed: Type.Optional(
    Type.Integer({
      description: 'Random seed for reproducibility. 0 to 2^53−1; -1 picks a random seed (extension). The seed used is reported.',
      minimum: RANDOM_SEED,
      maximum: MAX_SEED,
      default: DEFAULT_SEED,
    }),
  ),
  cfg: Type.Optional(
    Type.Number({
      description: 'Classifier-free guidance scale. cfg > 1 guides against negative_prompt (two model evaluations per step); 1 turns guidance off.',
      minimum: MIN_CFG,
      maximum: MAX_CFG,
      default: DEFAULT_CFG,
    }),
  ),
  sampler: Type.Optional(Choice(SAMPLERS, { description: 'Sampling method', default: DEFAULT_SAMPLER })),
  steps: Type.Optional(
    Type.Integer({ description: 'Number of inference steps', minimum: MIN_STEPS, maximum: MAX_STEPS, default: DEFAULT_STEPS }),
  ),
  aspect_ratio: Type.Optional(
    Choice(ASPECT_RATIO_NAMES, {
      description: 'Aspect ratio of the output image. match_input_image follows the first reference image and needs at least one.',
      default: DEFAULT_ASPECT_RATIO,
    }),
  ),
  go_fast: Type.Optional(
    Type.Boolean({ description: 'Enable fast generation mode. false runs the exact bf16 reference path.', default: DEFAULT_GO_FAST }),
  ),
  image_format: Type.Optional(
    Choice([...IMAGE_FORMATS, JPEG_ALIAS], {
      description: 'Output image format (jpg is accepted for jpeg)',
      default: DEFAULT_IMAGE_FORMAT,
    }),
  ),
  quality: Type.Optional(
    Type.Integer({
      description: 'Output image quality. Used by jpeg and webp; ignored by png.',
      minimum: MIN_QUALITY,
      maximum: MAX_QUALITY,
      default: DEFAULT_QUALITY,
    }),
  ),
  width: Type.Optional(
    Type.Integer({
      description: `Output width in pixels (extension): a multiple of ${SIZE_MULTIPLE}, ${MIN_SIDE} to ${MAX_SIDE}; give with height, at most ${MAX_PIXELS} pixels in all. Overrides aspect_ratio.`,
      minimum: MIN_SIDE,
      maximum: MAX_SIDE,
      multipleOf: SIZE_MULTIPLE,
    }),
  ),
  height: Type.Optional(
    Type.Integer({
      description: `Output height in pixels (extension): a multiple of ${SIZE_MULTIPLE}, ${MIN_SIDE} to ${MAX_SIDE}; give with width. Overrides aspect_ratio.`,
      minimum: MIN_SIDE,
      maximum: MAX_SIDE,
      multipleOf: SIZE_MULTIPLE,
    }),
  ),
  base64: Type.Optional(
    Type.Boolean({ description: 'Answer JSON with the image base64-encoded instead of raw bytes (extension)', default: DEFAULT_BASE64 }),
  ),
  loras: Type.Optional(
    Type.Array(
      Type.Object(
        {
          path: Text({
            description:
              'An http(s) URL of a .safetensors LoRA, a Hugging Face repo id (owner/name, optional @revision), or a file name in the server\'s LoRA directory (KLEIN_LORA_DIR)',
            minLength: 1,
            maxLength: MAX_LORA_PATH_LENGTH,
          }),
          weight_name: Type.Optional(Text({ description: 'For a repo id: the file in the repository (default pytorch_lora_weights.safetensors)', minLength: 1, maxLength: 256 })),
          scale: Type.Optional(Type.Number({ description: 'How strongly it applies (0 turns it off; negative inverts it)', minimum: -MAX_LORA_SCALE, maximum: MAX_LORA_SCALE, default: DEFAULT_LORA_SCALE })),
        },
        { additionalProperties: false },
      ),
      {
        description: `LoRA adapters applied to this request (extension), at most ${MAX_LORAS}: diffusers/PEFT, kohya/musubi-tuner, ai-toolkit/BFL and ComfyUI files. Each file's header is checked before anything is charged; a file that does not fit the model is a 400 invalid_lora. See the price for the surcharge per adapter.`,
        maxItems: MAX_LORAS,
        default: [],
      },
    ),
  ),
};

/** width and height come together (JSON Schema 2020-12 `dependentRequired`). */
const objectOptions = {
  additionalProperties: false as const,
  dependentRequired: { width: ['height'], height: ['width'] },
};

export const GenerateBody = Type.Object(GENERATE_PROPERTIES, {
  ...objectOptions,
  $id: 'GenerateBody',
  description: 'Body of POST /v1/flux-2-klein-4b',
});

const WEBHOOK_URL_PROPERTY = Type.Optional(
  WebhookUrl({
    description: `URL that receives one signed terminal event for this request (http:// or https:// with a host, at most ${MAX_WEBHOOK_URL_LENGTH} characters; the image_urls address rules apply)`,
    maxLength: MAX_WEBHOOK_URL_LENGTH,
    pattern: WEBHOOK_URL_PATTERN,
  }),
);

/** The v2 (asynchronous) body: the same fields plus `webhook_url` (contract §4). */
export const AsyncBody = Type.Object(
  { ...GENERATE_PROPERTIES, webhook_url: WEBHOOK_URL_PROPERTY },
  { ...objectOptions, $id: 'AsyncBody', description: 'Body of POST /v2/flux-2-klein-4b' },
);

/**
 * The bodies of a base (undistilled) model's routes (contract §6): the same fields and
 * rules, with its own defaults of steps and cfg, so that the document and the playground
 * show what a request without them runs with.
 */
const BASE_PROPERTIES = {
  ...GENERATE_PROPERTIES,
  cfg: Type.Optional(Type.Number({ ...GENERATE_PROPERTIES.cfg, default: VARIANT_DEFAULTS.base.cfg })),
  steps: Type.Optional(Type.Integer({ ...GENERATE_PROPERTIES.steps, default: VARIANT_DEFAULTS.base.steps })),
};
export const GenerateBodyBase = Type.Object(BASE_PROPERTIES, {
  ...objectOptions,
  $id: 'GenerateBodyBase',
  description: 'Body of POST /v1/{slug} for a base (undistilled) model: the defaults of steps and cfg are its own',
});
export const AsyncBodyBase = Type.Object(
  { ...BASE_PROPERTIES, webhook_url: WEBHOOK_URL_PROPERTY },
  { ...objectOptions, $id: 'AsyncBodyBase', description: 'Body of POST /v2/{slug} for a base (undistilled) model' },
);

/** The sync and async bodies of a model of `variant`. */
export function bodiesFor(variant: Variant) {
  return variant === 'base' ? { sync: GenerateBodyBase, async: AsyncBodyBase } : { sync: GenerateBody, async: AsyncBody };
}

/** A validated v1 body, before defaults (the schema's name is also its `Static` type). */
export type GenerateBody = Static<typeof GenerateBody>;
/** A validated v1 or v2 body, before defaults (`webhook_url` only ever set for v2). */
export type GenerateInput = Static<typeof AsyncBody>;
