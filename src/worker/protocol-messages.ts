/**
 * The messages of the worker ↔ engine protocol, version 1 (protocol/PROTOCOL.md), defined
 * once: the JSON header of every frame either side sends, as TypeBox schemas. They are
 *
 * - the TypeScript types of the headers (`Static<>`): protocol.ts builds every header it
 *   sends as one of these types and reads engine headers by their field names, so a field
 *   the schema lacks does not compile;
 * - protocol/messages.schema.json, which the engine's tests check the Python side against
 *   (every frame the real server sends, its typed dicts, the shared fixtures). It is written
 *   from here by `node --import tsx src/worker/protocol-schema-write.ts`;
 *   protocol-schema.test.ts fails when the committed file is stale.
 *
 * The schemas pin what v1 writers send: every object is closed (additionalProperties:
 * false), so a field that one side adds or renames without the schema fails a test. Readers
 * are lenient at run time, as PROTOCOL.md lets them be: parseEngineMessage ignores fields it
 * does not read and unknown error codes, and the engine defaults optional generate fields.
 * Limits that are model rules (sizes, steps, reference count) are not here: the engine
 * answers them with invalid_input and advertises them in `ready`.
 */
import Type, { type Static, type TSchema } from 'typebox';
import { SAMPLERS } from '../contract/types.js';

export const PROTOCOL_VERSION = 1;
/** invalid_lora: a request's LoRA file cannot be applied to this model (contract §7: a 400 invalid_lora). */
export const ENGINE_ERROR_CODES = ['invalid_input', 'invalid_lora', 'out_of_memory', 'cancelled', 'internal'] as const;
/** Contract §7: adapters per request, and the range of their scales. */
export const MAX_LORAS = 3;
export const MAX_LORA_SCALE = 4;
export type EngineErrorCode = (typeof ENGINE_ERROR_CODES)[number];

/** Where the JSON Schema document lives, relative to the repository root. */
export const MESSAGES_SCHEMA_FILE = 'protocol/messages.schema.json';

const closed = { additionalProperties: false } as const;
const version = Type.Literal(PROTOCOL_VERSION, { description: 'Protocol version; every header has it' });
const jobId = Type.String({ minLength: 1, description: "The job's id, chosen by the worker" });
const count = (description: string) => Type.Integer({ minimum: 0, description });
const positive = (description: string) => Type.Integer({ minimum: 1, description });
/** PROTOCOL.md: seeds are integers from 0 to 2^53 − 1 (exact in a JSON number). */
const seed = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Already resolved: 0 to 2^53 − 1' });
const size = (description: string) => Type.Object({ width: positive('Pixels'), height: positive('Pixels') }, { ...closed, description });
const orNull = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

// ------------------------------------------------------------- engine → worker

export const ReadyHeader = Type.Object(
  {
    v: version,
    type: Type.Literal('ready'),
    protocol: Type.Literal(PROTOCOL_VERSION),
    engine_version: Type.String(),
    model: Type.String({ description: 'The model id or path, as given' }),
    variant: Type.String({ description: 'distilled | base (the simulated engine: simulated)' }),
    device: Type.String({ description: 'cpu, cuda:0, …' }),
    dtype: Type.String({ description: 'float32 | bfloat16 (the simulated engine: none)' }),
    capabilities: Type.Object(
      {
        samplers: Type.Array(Type.Enum(SAMPLERS)),
        max_reference_images: count('Reference images a request may carry'),
        go_fast: Type.Boolean({ description: 'The fast path really changes something on this device' }),
        preview: Type.Boolean(),
        max_batch: positive('Compatible go_fast jobs the engine runs together'),
        loras: Type.Optional(
          Type.Object(
            {
              max: count('Adapters a request may carry'),
              formats: Type.Array(Type.String(), { description: 'File layouts the engine converts: diffusers, peft, kohya, ai-toolkit, comfyui' }),
              dims: Type.Optional(
                Type.Object(
                  { inputs: Type.Array(positive('in_features')), outputs: Type.Array(positive('out_features')) },
                  { ...closed, description: "The in and out features of the transformer's linear layers: the gateway checks a LoRA file's shapes against them before anything is charged" },
                ),
              ),
            },
            { ...closed, description: 'LoRA adapters at request time; absent: the engine takes none (the simulated engine)' },
          ),
        ),
      },
      closed,
    ),
    geometry: Type.Object(
      { pixel_multiple: positive('Image sides are multiples of this'), min_side: positive('Pixels'), max_side: positive('Pixels') },
      closed,
    ),
    fast: Type.Optional(
      Type.Object(
        {
          fp8: orNull(Type.Enum(['rowwise', 'tensorwise', 'emulated'])),
          fp8_note: Type.String(),
          act_scale: orNull(Type.Enum(['tensor', 'row'])),
          attention: orNull(Type.String({ description: 'Attention kernel' })),
          compile: orNull(Type.String({ description: 'torch.compile mode' })),
          warmup_sizes: Type.Array(Type.String({ pattern: '^[0-9]+x[0-9]+$' }), { description: 'Sizes compiled at start-up' }),
          reference_path: Type.Boolean({ description: 'false: the engine refuses go_fast false' }),
          offload: Type.Enum(['none', 'model']),
        },
        { ...closed, description: 'What the fast path uses on this device, informational; absent on the simulated engine' },
      ),
    ),
  },
  { ...closed, description: 'Engine → worker, once, when the model is loaded and warmed up. No payload.' },
);

export const ProgressHeader = Type.Object(
  {
    v: version,
    type: Type.Literal('progress'),
    id: jobId,
    step: positive('1-based sampler step'),
    total: positive('Sampler steps of the job'),
    preview: Type.Optional(size('Present when the payload holds a preview, packed 8-bit RGB')),
  },
  { ...closed, description: 'Engine → worker, after each sampler step of a job, in step order.' },
);

export const ResultHeader = Type.Object(
  {
    v: version,
    type: Type.Literal('result'),
    id: jobId,
    width: positive('Pixels'),
    height: positive('Pixels'),
    seed,
    timings: Type.Object(
      { text_ms: Type.Number({ minimum: 0 }), denoise_ms: Type.Number({ minimum: 0 }), decode_ms: Type.Number({ minimum: 0 }), total_ms: Type.Number({ minimum: 0 }) },
      { ...closed, description: 'Milliseconds' },
    ),
  },
  { ...closed, description: "Engine → worker: a job's image, packed 8-bit RGB in the payload." },
);

export const ErrorHeader = Type.Object(
  {
    v: version,
    type: Type.Literal('error'),
    id: orNull(jobId),
    code: Type.Enum(ENGINE_ERROR_CODES),
    message: Type.String(),
  },
  { ...closed, description: "Engine → worker: a job's failure, or (id null) why the model could not be loaded. No payload." },
);

// ------------------------------------------------------------- worker → engine

export const GenerateHeader = Type.Object(
  {
    v: version,
    type: Type.Literal('generate'),
    id: jobId,
    params: Type.Object(
      {
        prompt: Type.String(),
        negative_prompt: Type.String(),
        seed,
        cfg: Type.Number(),
        sampler: Type.Enum(SAMPLERS),
        steps: positive('Sampler steps'),
        width: positive('Pixels'),
        height: positive('Pixels'),
        go_fast: Type.Boolean(),
        preview: Type.Boolean({ description: 'Send preview frames with progress' }),
      },
      closed,
    ),
    images: Type.Array(size('A reference image, already resized by the worker'), {
      description: "The reference images in the payload, their RGB concatenated in this order",
    }),
    loras: Type.Optional(
      Type.Array(
        Type.Object(
          {
            key: Type.String({ pattern: '^[0-9a-f]{64}$', description: "sha256 of the file's bytes, lowercase hex: the engine's cache key" }),
            path: Type.String({ minLength: 1, description: 'Absolute local path of the .safetensors file the worker downloaded' }),
            scale: Type.Number({ minimum: -MAX_LORA_SCALE, maximum: MAX_LORA_SCALE }),
          },
          closed,
        ),
        { maxItems: MAX_LORAS, description: 'LoRA adapters applied to this job, in order; absent or empty: none' },
      ),
    ),
    batch: Type.Optional(
      Type.Object(
        { id: Type.String({ minLength: 1, description: "The batch's id, chosen by the worker" }), size: positive('Generate frames in the batch') },
        { ...closed, description: 'The job is one of a batch the worker formed: its `size` generate frames are sent back to back and run together' },
      ),
    ),
  },
  { ...closed, description: 'Worker → engine: one job. Payload: the reference images.' },
);

export const CancelHeader = Type.Object(
  { v: version, type: Type.Literal('cancel'), id: jobId },
  { ...closed, description: 'Worker → engine: cancel a job (ignored for an unknown id). No payload.' },
);

export const ShutdownHeader = Type.Object(
  { v: version, type: Type.Literal('shutdown') },
  { ...closed, description: 'Worker → engine: finish the running job, then exit 0. No payload.' },
);

export type ReadyHeader = Static<typeof ReadyHeader>;
export type ProgressHeader = Static<typeof ProgressHeader>;
export type ResultHeader = Static<typeof ResultHeader>;
export type ErrorHeader = Static<typeof ErrorHeader>;
export type GenerateHeader = Static<typeof GenerateHeader>;
export type CancelHeader = Static<typeof CancelHeader>;
export type ShutdownHeader = Static<typeof ShutdownHeader>;

/** Every message's header schema by its `type`. */
export const MESSAGES = {
  ready: ReadyHeader,
  progress: ProgressHeader,
  result: ResultHeader,
  error: ErrorHeader,
  generate: GenerateHeader,
  cancel: CancelHeader,
  shutdown: ShutdownHeader,
} as const;
export type MessageType = keyof typeof MESSAGES;

/** The JSON Schema document (draft 2020-12) of every header, as protocol/messages.schema.json holds it. */
export function messagesSchema(): object {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'klein-serve worker ↔ engine protocol, version 1: frame headers',
    description:
      `Written by \`node --import tsx src/worker/protocol-schema-write.ts\` from src/worker/protocol-messages.ts; do not edit. ` +
      'Each $defs entry is the JSON header of one message type (protocol/PROTOCOL.md has the framing and the payloads). ' +
      'Objects are closed: they pin what v1 writers send; readers ignore fields they do not know.',
    $defs: MESSAGES,
    oneOf: Object.keys(MESSAGES).map((name) => ({ $ref: `#/$defs/${name}` })),
  };
}

/** The file's exact text: two-space JSON and a final newline. */
export function messagesSchemaText(): string {
  return `${JSON.stringify(messagesSchema(), null, 2)}\n`;
}
