/**
 * Every error the API can answer, in one table (contract §2). Code → HTTP status and a
 * default message. Tests assert codes, not message text.
 */

export const ERRORS = {
  invalid_json: { status: 400, message: 'The body is not valid JSON' },
  unsupported_media_type: { status: 400, message: 'Content-Type must be application/json' },
  validation_failed: { status: 400, message: 'Invalid request parameters' },
  image_fetch_failed: { status: 400, message: 'A reference image could not be fetched' },
  image_invalid: { status: 400, message: 'A reference image could not be decoded' },
  image_too_large: { status: 400, message: 'A reference image is too large' },
  image_too_small: { status: 400, message: 'A reference image is too small' },
  image_bad_ratio: { status: 400, message: 'A reference image is too elongated' },
  url_blocked: { status: 400, message: 'The URL points at a blocked address' },
  invalid_lora: { status: 400, message: 'The LoRA is not usable with this model' },
  invalid_multipart: { status: 400, message: 'The multipart/form-data body is malformed' },
  bad_url: { status: 400, message: 'The request URL is malformed' },
  bad_request: { status: 400, message: 'The request is not valid HTTP' },
  unauthorized: { status: 401, message: 'Missing or invalid API key' },
  forbidden: { status: 403, message: 'This key may not do this' },
  // Key-less links (contract §9). Two codes, as S3 tells "SignatureDoesNotMatch" from "Request has expired":
  // a client may fetch a fresh link on the second, never on the first.
  invalid_link: { status: 403, message: 'The link is not valid: its signature does not match this path (tampered, or moved to another request)' },
  link_expired: { status: 403, message: 'The link has expired: get a fresh one from GET /v2/requests/{id}' },
  not_found: { status: 404, message: 'Not found' },
  insufficient_credits: { status: 406, message: 'Insufficient credits' },
  request_timeout: { status: 408, message: 'The request was not received in time' },
  request_cancelled: { status: 409, message: 'The request was cancelled; it was not charged' },
  idempotency_conflict: { status: 422, message: 'Idempotency-Key was reused with a different body' },
  payload_too_large: { status: 413, message: 'The body is too large' },
  rate_limited: { status: 429, message: 'Too many requests per minute' },
  headers_too_large: { status: 431, message: 'The request headers are too large' },
  concurrency_limited: { status: 429, message: 'Too many concurrent requests' },
  /** Never seen by a client (it has gone): logs and metrics count it, as nginx's 499. */
  client_closed: { status: 499, message: 'The client closed the connection before its answer' },
  internal: { status: 500, message: 'Internal server error' },
  engine_unavailable: { status: 502, message: 'No engine can take work' },
  engine_failed: { status: 502, message: 'The engine failed while generating' },
  out_of_memory: { status: 502, message: 'The engine ran out of GPU memory' },
  not_ready: { status: 503, message: 'The server is starting' },
  draining: { status: 503, message: 'The server is shutting down' },
  queue_unavailable: { status: 503, message: 'The job queue is unavailable; try again shortly' },
  no_workers: { status: 503, message: 'No worker serves this model right now; try again shortly' },
  timeout: { status: 504, message: 'The request did not finish in time' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export interface FieldError {
  field: string;
  message: string;
}

/** An error with a code from the table; the gateway's error handler turns it into the envelope. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: FieldError[] | undefined;
  /** Extra response headers (Retry-After, x-rate-limit-reset-at-utc, …). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message?: string,
    opts: { details?: FieldError[]; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message ?? ERRORS[code].message, { cause: opts.cause });
    this.name = 'ApiError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = opts.details;
    this.headers = opts.headers ?? {};
  }
}

/** The body of every error response (contract §2). */
export interface ErrorBody {
  error: string;
  code: ErrorCode;
  request_id: string;
  details?: FieldError[];
}

export function errorBody(err: ApiError, requestId: string): ErrorBody {
  const body: ErrorBody = { error: err.message, code: err.code, request_id: requestId };
  if (err.details && err.details.length > 0) body.details = err.details;
  return body;
}

/** The reason a client-gone signal aborts with (a 499 that nobody receives, for logs and metrics). */
export function clientClosed(): ApiError {
  return new ApiError('client_closed');
}
