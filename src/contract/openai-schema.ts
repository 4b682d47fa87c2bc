/**
 * The OpenAI-compatible image routes (contract §8): their body as one TypeBox object schema,
 * validated exactly as strictly as the Segmind body (validate.ts, same messages): no
 * coercion, integers are integers, unknown fields are named. `/v1/images/generations` takes
 * it as JSON; `/v1/images/edits` as multipart/form-data (`OpenAiEditsForm`), whose fields are
 * strings, read back into numbers and booleans by `fromFormFields` under the same rules
 * before the same validation. Also their answer, `OpenAiImagesResponse`.
 *
 * OpenAI's own fields that mean nothing here (quality, style, user, …) are accepted with
 * their OpenAI types and ignored; our extensions (steps, cfg, negative_prompt, sampler,
 * go_fast, seed) carry the Segmind body's rules.
 */
import Type, { type Static } from 'typebox';
import { IMAGE_FORMATS } from './types.js';
import { GENERATE_PROPERTIES, MAX_CFG, MAX_IMAGES, MAX_SEED, MAX_STEPS, MIN_CFG, MIN_STEPS } from './request-schema.js';
import { Choice, Text } from './string-schemas.js';
import { ERRORS, type ErrorCode } from './errors.js';

export const OPENAI_MAX_IMAGES = MAX_IMAGES;
/** `WIDTHxHEIGHT` or `auto`; the sides' own rules (multiples of 16, 64 to 2048) apply after. */
export const OPENAI_SIZE_PATTERN = '^(auto|[0-9]{2,4}x[0-9]{2,4})$';
export const OPENAI_RESPONSE_FORMATS = ['b64_json', 'url'] as const;

const own = {
  prompt: GENERATE_PROPERTIES.prompt,
  model: Type.Optional(Text({ description: 'A served model, or an alias of one; absent: the default model', minLength: 1, maxLength: 256 })),
  n: Type.Optional(Type.Integer({ description: `Images to generate, all or nothing: 1 to ${OPENAI_MAX_IMAGES}`, minimum: 1, maximum: OPENAI_MAX_IMAGES, default: 1 })),
  size: Type.Optional(
    Text({ description: 'WIDTHxHEIGHT (multiples of 16, 64 to 2048 each) or auto (1024x1024, or the first image\'s ratio for edits)', pattern: OPENAI_SIZE_PATTERN, default: 'auto' }),
  ),
  response_format: Type.Optional(Choice(OPENAI_RESPONSE_FORMATS, { description: 'How images come back', default: 'b64_json' })),
  output_format: Type.Optional(Choice(IMAGE_FORMATS, { description: 'Image format', default: 'png' })),
  output_compression: Type.Optional(Type.Integer({ description: 'jpeg and webp quality, 0 to 100 (below 10 counts as 10)', minimum: 0, maximum: 100 })),
  seed: Type.Optional(Type.Integer({ description: `Seed of the first image (image i uses seed + i), 0 to ${MAX_SEED}; absent: random`, minimum: 0, maximum: MAX_SEED })),
  // No default in the schema: absent, each model's own applies (GET /v1/models lists them).
  steps: Type.Optional(Type.Integer({ description: "Number of inference steps (extension); absent: the model's default (GET /v1/models)", minimum: MIN_STEPS, maximum: MAX_STEPS })),
  cfg: Type.Optional(Type.Number({ description: "Classifier-free guidance scale (extension), 1 turns it off; absent: the model's default", minimum: MIN_CFG, maximum: MAX_CFG })),
  negative_prompt: GENERATE_PROPERTIES.negative_prompt,
  sampler: GENERATE_PROPERTIES.sampler,
  go_fast: GENERATE_PROPERTIES.go_fast,
  loras: GENERATE_PROPERTIES.loras,
};

/** OpenAI's fields with no meaning here: accepted with their types, ignored. */
const ignored = {
  quality: Type.Optional(Text({ description: 'Ignored (OpenAI\'s quality tier)', maxLength: 32 })),
  style: Type.Optional(Text({ description: 'Ignored', maxLength: 32 })),
  user: Type.Optional(Text({ description: 'Ignored (OpenAI\'s end-user id)', maxLength: 256 })),
  background: Type.Optional(Text({ description: 'Ignored', maxLength: 32 })),
  moderation: Type.Optional(Text({ description: 'Ignored', maxLength: 32 })),
  input_fidelity: Type.Optional(Text({ description: 'Ignored', maxLength: 32 })),
  partial_images: Type.Optional(Type.Integer({ description: 'Ignored', minimum: 0, maximum: 3 })),
  stream: Type.Optional(Type.Boolean({ description: 'Only false: streaming is not offered here; follow a request with /v2 events instead', default: false })),
};

export const OpenAiImagesBody = Type.Object(
  { ...own, ...ignored },
  {
    additionalProperties: false,
    $id: 'OpenAiImagesBody',
    description: 'Body of POST /v1/images/generations (JSON) and the fields of POST /v1/images/edits (multipart)',
  },
);

export type OpenAiImagesInput = Static<typeof OpenAiImagesBody>;

/** The form of POST /v1/images/edits: the body's fields as form fields, plus 1 to 4 images. */
export const OpenAiEditsForm = Type.Object(
  {
    ...OpenAiImagesBody.properties,
    image: Type.Array(Type.String({ format: 'binary' }), {
      description: `1 to ${OPENAI_MAX_IMAGES} reference images (png, jpeg or webp), sent as image or image[]`,
      minItems: 1,
      maxItems: OPENAI_MAX_IMAGES,
    }),
  },
  { additionalProperties: false, $id: 'OpenAiEditsForm', description: "Form of POST /v1/images/edits (multipart/form-data); numbers and booleans as their plain decimal or true/false spelling (Python's True/False too)" },
);

/** The answer of both routes: every image of the call, in order. */
export const OpenAiImagesResponse = Type.Object(
  {
    created: Type.Integer({ description: 'Unix time, in seconds' }),
    data: Type.Array(
      Type.Object({
        b64_json: Type.Optional(Type.String({ description: 'The image, base64-encoded (response_format b64_json)' })),
        url: Type.Optional(Type.String({ description: 'A link to the image (response_format url) that works without the API key until it expires (KLEIN_LINK_TTL, default 1 h): presigned on S3 storage, else signed with expires and sig' })),
        revised_prompt: Type.Null({ description: 'Always null: the prompt is used as given' }),
        request_id: Type.String({ description: "This image's request; GET /v2/requests/{id} describes it" }),
        seed: Type.Integer({ description: 'The seed this image used' }),
      }),
    ),
    output_format: Choice(IMAGE_FORMATS),
    size: Type.String({ description: 'WIDTHxHEIGHT of the images' }),
    usage: Type.Object({ seeds: Type.Array(Type.Integer(), { description: "Each image's seed, in order" }) }),
  },
  { $id: 'OpenAiImagesResponse', description: 'Answer of POST /v1/images/generations and /v1/images/edits' },
);

function kindOf(name: string): string | undefined {
  return (OpenAiImagesBody.properties as Record<string, { type?: string }>)[name]?.type;
}

/** A form's boolean spellings (fromFormFields). */
const FORM_BOOLEANS = new Map([
  ['true', true],
  ['false', false],
  ['True', true],
  ['False', false],
]);

/**
 * Multipart fields are strings: a field whose schema wants a number or a boolean is read
 * back from its plain decimal or `true`/`false` spelling only (no hex, no exponents, no
 * spaces), so `0x10` or `1e3` stay strings and the validator refuses them by name. Python's
 * `True`/`False` is read too: a client generated from the document by openapi-python-client
 * writes a form's booleans with str() (test/e2e/generated-client.test.ts).
 */
export function fromFormFields(fields: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    const kind = kindOf(k);
    if (kind === 'integer' && /^-?(0|[1-9][0-9]{0,15})$/.test(v)) out[k] = Number(v);
    else if (kind === 'number' && /^-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,16})?$/.test(v)) out[k] = Number(v);
    else if (kind === 'boolean' && FORM_BOOLEANS.has(v)) out[k] = FORM_BOOLEANS.get(v);
    else if (kind === 'array' && k === 'loras') out[k] = jsonField(v);
    else out[k] = v;
  }
  return out;
}

/** A form field holding JSON (`loras` in the edits form: `[{"path": …, "scale": 0.8}]`); as given when it is not JSON, for the validator to refuse. */
function jsonField(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/** OpenAI's error types, as the OpenAI routes answer them (gateway/openai-errors.ts maps our codes). */
export const OPENAI_ERROR_TYPES = [
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'insufficient_quota',
  'rate_limit_error',
  'server_error',
  'service_unavailable_error',
] as const;

/** The error envelope of the OpenAI routes (contract §8), OpenAI's own shape. */
export const OpenAiError = Type.Object(
  {
    error: Type.Object({
      message: Type.String({ description: 'What went wrong' }),
      type: Choice(OPENAI_ERROR_TYPES, { description: "OpenAI's error type" }),
      param: Type.Union([Type.String(), Type.Null()], { description: 'The field at fault, or null' }),
      code: Type.Unsafe<ErrorCode>({ type: 'string', enum: Object.keys(ERRORS), description: 'The error code (a row of the error table)' }),
    }),
  },
  { $id: 'OpenAiError', description: "The error envelope of the OpenAI-compatible routes: OpenAI's, so its clients raise with the reason" },
);
export type OpenAiError = Static<typeof OpenAiError>;

/** One model `model` accepts, in OpenAI's shape (GET /v1/models). */
export const OpenAiModel = Type.Object(
  {
    id: Type.String({ description: 'The name to pass as model: a served slug or an alias of one' }),
    object: Type.Literal('model'),
    created: Type.Integer({ description: 'Unix time, in seconds, when this server started' }),
    owned_by: Type.String({ description: "The model's publisher" }),
    slug: Type.String({ description: 'The served model it runs (itself for a slug; /v1/{slug} and /v2/{slug} are its routes)' }),
    variant: Choice(['distilled', 'base'], { description: "Read from the model's files; its defaults follow it" }),
    defaults: Type.Object({ steps: Type.Integer(), cfg: Type.Number() }, { description: 'steps and cfg when a request leaves them out' }),
  },
  { $id: 'OpenAiModel', description: 'A model (or an alias of one) that the OpenAI-compatible routes take as model' },
);

export const OpenAiModelList = Type.Object(
  { object: Type.Literal('list'), data: Type.Array(OpenAiModel) },
  { $id: 'OpenAiModelList', description: "The models the OpenAI-compatible routes take, in OpenAI's list shape" },
);
