/**
 * The JSON answers of the public API (contract §1, §2, §4), as TypeBox schemas: each is the
 * route's response schema (which also serializes the answer: a field not written here does
 * not leave the server), the OpenAPI component named by its `$id`, and, through `Static`,
 * the type the typed client and the playground read the answer as.
 *
 * The request status list is REQUEST_STATUSES (request-states.ts), the error codes the
 * keys of ERRORS (errors.ts): both are read from there, never written again.
 */
import Type, { type Static, type TSchema } from 'typebox';
import { ERRORS, type ErrorCode } from './errors.js';
import { REQUEST_STATUSES } from './request-states.js';
import { IMAGE_FORMATS } from './types.js';
import { Choice } from './string-schemas.js';

/** `schema` or null; the description is the union's, where readers look for it. */
const nullable = <T extends TSchema>(schema: T, description?: string) => Type.Union([schema, Type.Null()], description === undefined ? {} : { description });
const Seconds = (description: string) => nullable(Type.Number(), `${description}, in seconds; null until known`);
const Timestamp = (description: string) => nullable(Type.String({ format: 'date-time' }), description);

export const RequestStatusSchema = Choice(REQUEST_STATUSES, {
  description: 'QUEUED → PROCESSING → COMPLETED, FAILED or CANCELLED (the last three are final)',
});

export const FieldErrorSchema = Type.Object(
  {
    field: Type.String({ description: 'The body field (image_urls[2] for a list entry), header or parameter' }),
    message: Type.String({ description: 'What is wrong with it' }),
  },
);

/** Every answer that is not a 200 (contract §2). */
export const ErrorEnvelope = Type.Object(
  {
    error: Type.String({ description: 'A human-readable message (what Segmind clients read)' }),
    code: Type.Unsafe<ErrorCode>({ type: 'string', enum: Object.keys(ERRORS), description: 'The error code (a row of the error table)' }),
    request_id: Type.String({ description: 'The request id, as in the x-request-id header' }),
    details: Type.Optional(Type.Array(FieldErrorSchema, { description: 'A validation error: one entry per bad field' })),
  },
  { $id: 'Error', description: 'The error envelope of every answer that is not a 200' },
);

/** POST /v1/{model} with `"base64": true` (or an Accept header preferring JSON). */
export const GeneratedImage = Type.Object(
  {
    image: Type.String({ description: 'The image, base64-encoded' }),
    format: Choice(IMAGE_FORMATS),
    width: Type.Integer(),
    height: Type.Integer(),
    seed: Type.Integer({ description: 'The seed used' }),
    request_id: Type.String(),
    generation_time: Type.Number({ description: 'Seconds from the start of processing to the encoded image' }),
    cost: Type.Number({ description: 'Credits charged for this call' }),
    remaining_credits: Type.Number({ description: 'The balance after it' }),
  },
  { $id: 'GeneratedImage', description: 'The image as JSON (base64), with what the image headers say' },
);

const requestLinks = {
  status_url: Type.String({ description: 'GET: status, queue position and progress' }),
  response_url: Type.String({ description: 'GET: the request record' }),
  output_url: Type.String({
    description: 'GET with the API key: the image, once COMPLETED. A stable API route that never expires while the record lives; for a link that needs no key, see the record\'s `output`',
  }),
  cancel_url: Type.String({ description: 'POST: cancel the request' }),
  events_url: Type.String({
    description:
      'GET: Server-Sent Events until the request ends. Carries a short-lived token (`expires`, `sig`; KLEIN_EVENTS_LINK_TTL, default 900 s) so that a client without the key, such as a browser EventSource, can connect; a fresh one comes with GET /v2/requests/{id}',
  }),
};

export const Submitted = Type.Object(
  { request_id: Type.String(), status: RequestStatusSchema, ...requestLinks },
  { $id: 'Submitted', description: 'A queued request (or, replayed by its Idempotency-Key, the request it already is)' },
);

export const RequestMetrics = Type.Object(
  {
    queue_time: Seconds('From submission to the start of processing'),
    inference_time: Seconds('Generation on the engine'),
    total_time: Seconds('From submission to the end'),
    cost: Type.Number({ description: 'Credits charged: 0 unless COMPLETED' }),
    remaining_credits: Type.Optional(Type.Number({ description: "The account's balance now (the request record only)" })),
  },
  { additionalProperties: nullable(Type.Number()), description: 'Timings and money of the request' },
);

const Progress = Type.Object({ step: Type.Integer(), total: Type.Integer() });

const RequestError = nullable(Type.Object({ code: Type.String(), message: nullable(Type.String()) }), 'Why it FAILED or was CANCELLED; else null');

export const StatusView = Type.Object(
  {
    request_id: Type.String(),
    status: RequestStatusSchema,
    queue_position: Type.Integer({ description: 'Requests ahead of this one plus one while QUEUED; 0 otherwise' }),
    progress: nullable(Progress, 'The step running (or the last, once COMPLETED); null before the first'),
    // Segmind's status answer carries the error too; its SDK raises InferenceFailed with it.
    error: RequestError,
    metrics: RequestMetrics,
  },
  { $id: 'Status', description: 'Status, queue position and progress of a request' },
);

const requestRecordProperties = {
  request_id: Type.String(),
  status: RequestStatusSchema,
  input: Type.Record(Type.String(), Type.Unknown(), {
    description: 'The parameters the request runs with: defaults applied, the seed it uses, width and height resolved; a data: URI is replaced by its sha256 and length',
  }),
  output: nullable(
    Type.String(),
    'Once COMPLETED and delivered, a link to the image that works without the API key until it expires (KLEIN_LINK_TTL, default 1 h): a presigned URL on S3 storage, else this server\'s output route signed with `expires` and `sig` (GET /v2/requests/{id} signs a fresh one); the image base64-encoded with ?base64=true; else null',
  ),
  error: RequestError,
  metrics: RequestMetrics,
  created_at: Timestamp('When it was submitted'),
  started_at: Timestamp('When processing started; null before'),
  completed_at: Timestamp('When it ended; null before'),
  expires_at: Timestamp('When the record and its output are deleted'),
  ...requestLinks,
};

export const RequestRecord = Type.Object(requestRecordProperties, {
  $id: 'RequestRecord',
  description: 'The full record of a request (cog style: input, status, output, error, metrics, times)',
});

export const Cancellation = Type.Object(
  {
    request_id: Type.String(),
    status: RequestStatusSchema,
    cancelled: Type.Boolean({ description: 'false when the request had already ended' }),
  },
  { $id: 'Cancellation', description: 'The request after a cancel (never charged when cancelled)' },
);

export const Credits = Type.Object(
  { credits: Type.Number({ description: "The caller's balance" }), account_id: Type.String() },
  { $id: 'Credits', description: "The caller's balance" },
);

/** The data of the `queued` event of GET /v2/requests/{id}/events. */
export const QueuedEvent = Type.Object(
  { request_id: Type.String(), position: Type.Integer({ minimum: 1, description: 'Place in the queue (1: next)' }) },
  { $id: 'QueuedEvent', description: 'event: queued — sent again whenever the position changes' },
);

/** The data of a `progress` event. */
export const ProgressEvent = Type.Object(
  {
    step: Type.Integer(),
    total: Type.Integer(),
    preview: Type.Optional(
      Type.Object(
        { width: Type.Integer(), height: Type.Integer(), png_base64: Type.String() },
        { description: 'A low-resolution preview of this step (with ?preview=true)' },
      ),
    ),
  },
  { $id: 'ProgressEvent', description: 'event: progress — one per sampler step' },
);

/** The data of the terminal event: `completed`, `failed` or `cancelled`. */
export const TerminalEvent = Type.Object(
  { ...requestRecordProperties, reason: Type.Optional(Type.String({ description: 'Why it was cancelled (cancelled only)' })) },
  { $id: 'TerminalEvent', description: 'event: completed, failed or cancelled — the request record; the stream then ends' },
);

/** Each schema's name is also its `Static` type: what a client reads the answer as. */
export type ErrorEnvelope = Static<typeof ErrorEnvelope>;
export type GeneratedImage = Static<typeof GeneratedImage>;
export type Submitted = Static<typeof Submitted>;
export type RequestMetrics = Static<typeof RequestMetrics>;
export type StatusView = Static<typeof StatusView>;
export type RequestRecord = Static<typeof RequestRecord>;
export type Cancellation = Static<typeof Cancellation>;
export type Credits = Static<typeof Credits>;
export type QueuedEvent = Static<typeof QueuedEvent>;
export type ProgressEvent = Static<typeof ProgressEvent>;
export type TerminalEvent = Static<typeof TerminalEvent>;
