/**
 * The body of the OpenAI-compatible image routes (contract §8) as one TypeBox object
 * schema, validated exactly as strictly as the Segmind body (validate.ts, same messages): no
 * coercion, integers are integers, unknown fields are named. `/v1/images/generations` takes
 * it as JSON; `/v1/images/edits` as multipart/form-data, whose fields are strings, read back
 * into numbers and booleans by `fromFormFields` under the same rules before validation.
 *
 * OpenAI's own fields that mean nothing here (quality, style, user, …) are accepted with
 * their OpenAI types and ignored; our extensions (steps, cfg, negative_prompt, sampler,
 * go_fast, seed) carry the Segmind body's rules.
 */
import Type, { type Static } from 'typebox';
import { IMAGE_FORMATS } from './types.js';
import { GENERATE_PROPERTIES, MAX_SEED } from './request-schema.js';

export const OPENAI_MAX_IMAGES = 4;
/** `WIDTHxHEIGHT` or `auto`; the sides' own rules (multiples of 16, 64 to 2048) apply after. */
export const OPENAI_SIZE_PATTERN = '^(auto|[0-9]{2,4}x[0-9]{2,4})$';

const P = GENERATE_PROPERTIES;

const own = {
  prompt: P.prompt,
  model: Type.Optional(Type.String({ description: 'A served model, or an alias of one; absent: the default model', minLength: 1, maxLength: 256 })),
  n: Type.Optional(Type.Integer({ description: `Images to generate, all or nothing: 1 to ${OPENAI_MAX_IMAGES}`, minimum: 1, maximum: OPENAI_MAX_IMAGES, default: 1 })),
  size: Type.Optional(
    Type.String({ description: 'WIDTHxHEIGHT (multiples of 16, 64 to 2048 each) or auto (1024x1024, or the first image\'s ratio for edits)', pattern: OPENAI_SIZE_PATTERN, default: 'auto' }),
  ),
  response_format: Type.Optional(Type.Union([Type.Literal('b64_json'), Type.Literal('url')], { description: 'How images come back', default: 'b64_json' })),
  output_format: Type.Optional(Type.Union(IMAGE_FORMATS.map((f) => Type.Literal(f)), { description: 'Image format', default: 'png' })),
  output_compression: Type.Optional(Type.Integer({ description: 'jpeg and webp quality, 0 to 100 (below 10 counts as 10)', minimum: 0, maximum: 100 })),
  seed: Type.Optional(Type.Integer({ description: `Seed of the first image (image i uses seed + i), 0 to ${MAX_SEED}; absent: random`, minimum: 0, maximum: MAX_SEED })),
  steps: P.steps,
  cfg: P.cfg,
  negative_prompt: P.negative_prompt,
  sampler: P.sampler,
  go_fast: P.go_fast,
};

/** OpenAI's fields with no meaning here: accepted with their types, ignored. */
const ignored = {
  quality: Type.Optional(Type.String({ description: 'Ignored (OpenAI\'s quality tier)', maxLength: 32 })),
  style: Type.Optional(Type.String({ description: 'Ignored', maxLength: 32 })),
  user: Type.Optional(Type.String({ description: 'Ignored (OpenAI\'s end-user id)', maxLength: 256 })),
  background: Type.Optional(Type.String({ description: 'Ignored', maxLength: 32 })),
  moderation: Type.Optional(Type.String({ description: 'Ignored', maxLength: 32 })),
  input_fidelity: Type.Optional(Type.String({ description: 'Ignored', maxLength: 32 })),
  partial_images: Type.Optional(Type.Integer({ description: 'Ignored', minimum: 0, maximum: 3 })),
  stream: Type.Optional(Type.Boolean({ description: 'Only false: streaming is not offered here; follow a request with /v2 events instead', default: false })),
};

export const OpenAiImagesBody = Type.Object({ ...own, ...ignored }, { additionalProperties: false, description: 'Body of POST /v1/images/generations (JSON) and the fields of POST /v1/images/edits (multipart)' });

export type OpenAiImagesInput = Static<typeof OpenAiImagesBody>;

function kindOf(name: string): string | undefined {
  return (OpenAiImagesBody.properties as Record<string, { type?: string }>)[name]?.type;
}

/**
 * Multipart fields are strings: a field whose schema wants a number or a boolean is read
 * back from its plain decimal or `true`/`false` spelling only (no hex, no exponents, no
 * spaces), so `0x10` or `1e3` stay strings and the validator refuses them by name.
 */
export function fromFormFields(fields: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    const kind = kindOf(k);
    if (kind === 'integer' && /^-?(0|[1-9][0-9]{0,15})$/.test(v)) out[k] = Number(v);
    else if (kind === 'number' && /^-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,16})?$/.test(v)) out[k] = Number(v);
    else if (kind === 'boolean' && (v === 'true' || v === 'false')) out[k] = v === 'true';
    else out[k] = v;
  }
  return out;
}
