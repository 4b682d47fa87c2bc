/**
 * OpenAI's error envelope for the OpenAI-compatible routes (contract §8):
 * `{"error": {"message", "type", "param", "code"}}`, so that OpenAI clients raise with the
 * reason (`str(e)` and `e.message` carry the message, `e.param` and `e.code` are set) rather
 * than a bare "Error code: 400". Every other route keeps the contract's envelope (§2).
 *
 * The routes throw ApiError as every route does, and the app's error handler sends the
 * contract's body; this route-level preSerialization hook turns that body into OpenAI's
 * shape before the route's response schema (OpenAiError) serializes it, so there is one
 * error path (logging, headers, statuses) for both. The status stays ours
 * (contract §2) and `x-request-id` stays set: the openai clients raise by status (any 4xx or
 * 5xx raises; 400 BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError,
 * 404 NotFoundError, 429 RateLimitError, others APIStatusError) and read the request id from
 * that header.
 *
 * `type`, after OpenAI's error-codes guide (platform.openai.com/docs/guides/error-codes) and
 * API reference: invalid_request_error for a request the caller must change (400, 404, 408,
 * 409, 413, 422, 431); authentication_error for 401; permission_error for 403;
 * insufficient_quota for too few credits; rate_limit_error for 429; server_error for 500,
 * 502 and 504; service_unavailable_error for 503. OpenAI answers a spent balance with 429
 * and type insufficient_quota; we keep contract §2's 406 with that type, because the
 * clients retry a 429 by themselves (a retry cannot help an empty balance) and raise on a
 * 406 all the same. `code` is our error code (contract §2's table); `param` is the field of
 * the first validation detail, else null.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, type ErrorBody, type ErrorCode } from '../contract/errors.js';
import type { OPENAI_ERROR_TYPES, OpenAiError } from '../contract/openai-schema.js';

export type OpenAiErrorType = (typeof OPENAI_ERROR_TYPES)[number];
export type OpenAiErrorBody = OpenAiError;

/** OpenAI's `type` for one of our codes (see the file comment for the source). */
export function openAiErrorType(code: ErrorCode): OpenAiErrorType {
  if (code === 'insufficient_credits') return 'insufficient_quota';
  const status: number = ERRORS[code].status;
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'service_unavailable_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** The contract's error body (§2) in OpenAI's envelope. */
export function toOpenAiError(body: ErrorBody): OpenAiErrorBody {
  return { error: { message: body.error, type: openAiErrorType(body.code), param: body.details?.[0]?.field ?? null, code: body.code } };
}

function isErrorBody(x: unknown): x is ErrorBody {
  const b = x as Partial<ErrorBody> | null;
  return typeof b === 'object' && b !== null && typeof b.error === 'string' && typeof b.code === 'string' && b.code in ERRORS;
}

/**
 * preSerialization hook of an OpenAI route: an error answer in the contract's envelope is
 * sent in OpenAI's. Anything else (a 200, a body that is not that envelope) passes as is.
 */
export async function openAiErrorHook(_req: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (reply.statusCode < 400 || !isErrorBody(payload)) return payload;
  return toOpenAiError(payload);
}

