/**
 * The pieces the routes' schemas are made of, shared so that each is written once: a
 * reference to a named component, the error responses of a route by status (with the codes
 * of the error table that answer each), the security requirement, the response headers, the
 * path parameters, and the binary and text answers described by content type.
 *
 * A route's `response` schemas also serialize its JSON answers (fast-json-stringify): a
 * field the schema does not declare is not sent.
 */
import Type, { type Static, type TSchema, type TUnsafe } from 'typebox';
import { ERRORS, type ErrorCode } from '../contract/errors.js';
import { ErrorEnvelope } from '../contract/responses.js';
import { OpenAiError } from '../contract/openai-schema.js';
import type { ServedModel } from '../contract/models.js';

/** Either header carries the key (contract §1: x-api-key; OpenAI clients: a Bearer token). */
export const SECURED: Array<Record<string, string[]>> = [{ ApiKey: [] }, { Bearer: [] }];

/**
 * A `$ref` to the component `schema` names by its `$id` (openapi.ts registers them), typed
 * as that schema: the document shows the component once, and the route still reads
 * `Static<schema>`.
 */
export function ref<T extends TSchema>(schema: T, options: { description?: string } = {}): TUnsafe<Static<T>> {
  return Type.Unsafe<Static<T>>(Type.Ref(componentName(schema), options));
}

/** The name a component has in the document: its `$id`. */
export function componentName(schema: TSchema): string {
  const id = (schema as { $id?: unknown }).$id;
  if (typeof id !== 'string') throw new Error('route-schema: a component needs an $id');
  return id;
}

const REQUEST_ID = { 'x-request-id': Type.String({ description: 'The request id (also in every error body)' }) };
const RATE_LIMIT = {
  'x-rate-limit-remaining': Type.Integer({ description: "Requests left in this key's minute" }),
  'x-rate-limit-reset-at-utc': Type.String({ format: 'date-time', description: 'When the minute resets' }),
};
const RETRY_AFTER = { 'retry-after': Type.Integer({ description: 'Seconds to wait before trying again' }) };

/** The headers of an answer from a rate-limited route. */
export const RATE_LIMITED_HEADERS = { ...REQUEST_ID, ...RATE_LIMIT };

/** The headers of a generated image (contract §1). */
export const IMAGE_HEADERS = {
  ...REQUEST_ID,
  'x-seed-value': Type.Integer({ description: 'The seed used' }),
  'x-generation-time': Type.String({ description: 'Seconds from the start of processing to the encoded image, e.g. 1.84' }),
  'x-cost': Type.String({ description: 'Credits charged for this call' }),
  'x-remaining-credits': Type.String({ description: 'The balance after it' }),
  ...RATE_LIMIT,
};

/** The error responses of a route: each status with the codes that answer it, in the envelope. */
export function errorResponses(...statuses: number[]) {
  return errorResponsesIn(ErrorEnvelope, statuses);
}

/** The same in OpenAI's envelope, for the OpenAI-compatible routes (gateway/openai-errors.ts). */
export function openAiErrorResponses(...statuses: number[]) {
  return errorResponsesIn(OpenAiError, statuses);
}

function errorResponsesIn<T extends TSchema>(
  envelope: T,
  statuses: number[],
): Record<number, { description: string; headers: Record<string, TSchema>; content: { 'application/json': { schema: TUnsafe<Static<T>> } } }> {
  const codes = (status: number) => (Object.keys(ERRORS) as ErrorCode[]).filter((c) => ERRORS[c].status === status);
  const headersOf = (status: number) => ({ ...REQUEST_ID, ...(status === 429 ? { ...RETRY_AFTER, ...RATE_LIMIT } : status === 503 ? RETRY_AFTER : {}) });
  return Object.fromEntries(
    statuses.map((status) => {
      const listed = codes(status);
      if (listed.length === 0) throw new Error(`route-schema: no error code answers ${status}`);
      return [status, { description: listed.join(', '), headers: headersOf(status), content: { 'application/json': { schema: ref(envelope) } } }];
    }),
  );
}

/** A JSON answer with its description (and headers, where it has some). */
export function json<T extends TSchema>(schema: T, description: string, headers: Record<string, TSchema> = REQUEST_ID) {
  return { description, headers, content: { 'application/json': { schema } } };
}

/** Bytes on the wire; the handler sends a Buffer, which is never serialized. */
const binary = Type.Unsafe<Buffer>(Type.String({ format: 'binary' }));
/** The three output formats, as an answer's content (contract §1). */
export const IMAGE_CONTENT = { 'image/png': { schema: binary }, 'image/jpeg': { schema: binary }, 'image/webp': { schema: binary } };

/** A text answer of one content type. */
export function text(contentType: string, description: string) {
  return { description, content: { [contentType]: { schema: Type.String() } } };
}

/** An answer without a body (304). */
export const NOT_MODIFIED = Type.Null({ description: 'Not modified (If-None-Match matched the ETag)' });

/**
 * The operationId of a served model's route: `base` for the first model (the one a server
 * with one model has, so its document keeps the names clients were generated with), and
 * `base_<slug>` for the others (`generate_flux_2_klein_9b`).
 */
export function modelOperationId(base: string, model: ServedModel, first: boolean): string {
  return first ? base : `${base}_${model.slug.replace(/[^a-z0-9]/g, '_')}`;
}

/** What a model's route runs, for its description in the document. */
export function modelRouteDescription(model: ServedModel): string {
  return `Runs ${model.slug} (${model.variant}; defaults: ${model.defaults.steps} steps, cfg ${model.defaults.cfg}).`;
}

/** The request of `/v2/requests/{id}/…`. */
export const RequestIdParams = Type.Object({ id: Type.String({ description: 'The request id (request_id)' }) });

/** The longest Idempotency-Key taken. */
export const MAX_IDEMPOTENCY_KEY = 255;

/**
 * Idempotency-Key (IETF draft): the same key and body within the retention is the same
 * request, charged once; the same key with another body is a 422. Named in lower case, as
 * HTTP/2 and Node present header names.
 */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({ minLength: 1, maxLength: MAX_IDEMPOTENCY_KEY, description: 'Makes a retry safe: the same key and body is the same request, charged once' }),
  ),
});
