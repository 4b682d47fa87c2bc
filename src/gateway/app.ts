/**
 * buildApp(deps) builds the Fastify instance without listening (tests use `inject()`);
 * src/cli/serve.ts listens.
 *
 * Request lifecycle of POST /v1/{slug} (one route per served model: /v1/flux-2-klein-4b by
 * default), in the order the code runs it, with the status each stage can produce:
 *
 *   connection  headers within KLEIN_HEADERS_TIMEOUT, the whole request within
 *               KLEIN_REQUEST_TIMEOUT (408, closed); at most KLEIN_MAX_CONNECTIONS open
 *   routing     bad percent-encoding (400), unknown route or method (404; an unknown
 *               model's 404 names the served ones)
 *   onRequest   request id → auth (401) → the key's models (403) → rate limit (429)
 *               → credit floor (406) → concurrency slot (429)         [before the body is read]
 *   parse       content type (400) → size (413) → JSON (400)
 *   validation  the route's schemas (validation.ts): body (400) → Idempotency-Key header (400)
 *   handler     readiness (503/502; 503 when no fleet worker serves the model)
 *               → price without references (406) → fetch + decode references (400)
 *               → resolve size, price → reserve credits (406) → enqueue
 *               → wait: engine error (502), timeout (504, cancelled), client gone (cancelled)
 *               → encode → settle the held charge → 200 with the image
 *   any bug     500 with the request id, logged, no stack trace in the body
 *
 * An answer given before the whole body arrived closes the connection, so a client cannot
 * hold it open by dripping a body nobody will read.
 */
import { OPENAI_MAX_IMAGES } from '../contract/openai-schema.js';
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Database } from '../store/schema.js';
import type { JobQueue } from '../queue/types.js';
import { ApiError, errorBody } from '../contract/errors.js';
import type { Limiter } from '../limits/limits.js';
import type { Metrics } from '../metrics/metrics.js';
import { registerHealthRoutes, unknownModel } from './routes/health.js';
import { registerSegmindV1Routes } from './routes/segmind-v1.js';
import { registerSegmindV2Routes } from './routes/segmind-v2.js';
import { registerRequestEventRoutes } from './routes/request-events.js';
import type { RequestLinks } from '../storage/request-links.js';
import type { OutputStorage } from '../storage/types.js';
import { registerAccountRoutes } from './routes/account.js';
import { registerAdminRoutes } from './routes/admin.js';
import { COMPONENTS, registerOpenApi, registerOpenApiRoutes } from './openapi.js';
import { routeValidatorCompiler } from './validation.js';
import multipart from '@fastify/multipart';
import { registerOpenAiImageRoutes } from './routes/openai-images.js';
import { registerOpenAiModelRoutes } from './routes/openai-models.js';
import { registerPlaygroundRoutes } from './routes/playground.js';

declare module 'fastify' {
  interface FastifyInstance {
    registeredRoutes: Array<{ method: string; url: string }>;
  }
}

export interface AppDeps {
  config: Config;
  db: Kysely<Database>;
  /** The embedded queue with its engine, or the fleet's queue on Redis. */
  queue: JobQueue;
  limiter: Limiter;
  metrics: Metrics;
  logger: Logger;
  storage: OutputStorage;
  /** A request's links that work without the API key, and checking them (contract §9). */
  links: RequestLinks;
  /** Set while the server drains on shutdown: new work gets 503. */
  draining?: () => boolean;
}

/** The app as routes see it: request parts and answers typed from their TypeBox schemas. */
export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

/** The body limit of every route but the generation routes (admin, cancel, account): small. */
export const SMALL_BODY_LIMIT = 64 * 1024;

/**
 * How often Node checks the open connections' request and headers timeouts (its default is
 * 30 s): a 408 comes up to one interval after its timeout has passed, so the interval is
 * part of the bound (config.ts: the default KLEIN_REQUEST_TIMEOUT plus this stays within a
 * minute). A check walks the list of connections still receiving a request: once a second
 * is cheap.
 */
export function connectionsCheckingIntervalMs(headersTimeoutMs: number): number {
  return Math.max(250, Math.min(1000, headersTimeoutMs / 4));
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { requestTimeoutMs, headersTimeoutMs } = deps.config;
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.logger as unknown as FastifyBaseLogger,
    bodyLimit: SMALL_BODY_LIMIT,
    genReqId: () => randomUUID(),
    return503OnClosing: false,
    requestTimeout: requestTimeoutMs,
    http: { headersTimeout: headersTimeoutMs, requestTimeout: requestTimeoutMs, connectionsCheckingInterval: connectionsCheckingIntervalMs(headersTimeoutMs) },
    clientErrorHandler: answerClientError,
    frameworkErrors: (err, req, reply) => {
      const apiErr =
        err.code === 'FST_ERR_BAD_URL'
          ? new ApiError('bad_url', 'The request URL is malformed (bad percent-encoding)')
          : err.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? new ApiError('not_found', `No route ${req.method} ${(req.raw.url ?? '').split('?')[0]?.slice(0, 200)} (a path segment is too long)`)
            : toApiError(err);
      const r = reply as unknown as FastifyReply;
      void r.header('x-request-id', req.id).status(apiErr.status).type('application/json').send(errorBody(apiErr, req.id));
    },
  });
  if (deps.config.maxConnections > 0) app.server.maxConnections = deps.config.maxConnections;
  app.setValidatorCompiler(routeValidatorCompiler(COMPONENTS));
  await registerOpenApi(app);

  // Every route, as registered (the OpenAPI test checks each is documented).
  const routes: Array<{ method: string; url: string }> = [];
  app.decorate('registeredRoutes', routes);
  app.addHook('onRoute', (r) => {
    for (const m of Array.isArray(r.method) ? r.method : [r.method]) if (m !== 'HEAD') routes.push({ method: m, url: r.url });
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  // One JSON parser of our own: invalid JSON and wrong content types get the contract's
  // envelope instead of the framework's defaults.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => {
    // An empty body is no body (a cancel sent with a JSON content type and nothing else).
    if ((body as Buffer).length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse((body as Buffer).toString('utf8')));
    } catch {
      done(new ApiError('invalid_json', 'The body is not valid JSON'), undefined);
    }
  });

  // While draining, every answer closes its connection, so keep-alive clients do not hold
  // the server open after their last response (server.close() waits for them).
  // An answer given before the body was read whole (a 401, 403, 406, 413, 429 from a hook)
  // closes the connection too: nothing would read the rest of the body.
  app.addHook('onSend', async (req, reply) => {
    if (deps.draining?.() || !req.raw.complete) reply.header('connection', 'close');
  });

  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.httpRequests.inc({
      route: req.routeOptions.url ?? 'unmatched',
      method: req.method,
      status: String(reply.statusCode),
    });
  });

  app.setErrorHandler((err: FastifyError | ApiError, req, reply) => {
    const apiErr = toApiError(err);
    // Bugs (500) are logged with their stack; engine and timeout answers (502–504) are
    // expected operating conditions and are logged as one line.
    if (apiErr.status === 500) req.log.error({ err, code: apiErr.code }, 'request failed');
    else if (apiErr.status > 500) req.log.warn({ code: apiErr.code, reason: apiErr.message }, 'request not served');
    for (const [k, v] of Object.entries(apiErr.headers)) reply.header(k, v);
    // A replay answers for the request it replays: its id in the header and in the body.
    const id = String(reply.getHeader('x-request-id') ?? req.id);
    return reply.status(apiErr.status).type('application/json').send(errorBody(apiErr, id));
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    // POST /v1/<slug> or /v2/<slug> of a model not served here: say which are (contract §6).
    const slug = req.method === 'POST' ? /^\/v[12]\/([^/]+)$/.exec(path)?.[1] : undefined;
    const err = slug !== undefined ? unknownModel(deps, decodeSegment(slug)) : new ApiError('not_found', `No route ${req.method} ${path}`);
    return reply.status(404).type('application/json').send(errorBody(err, req.id));
  });

  const typed: App = app.withTypeProvider<TypeBoxTypeProvider>();
  registerHealthRoutes(typed, deps);
  registerAccountRoutes(typed, deps);
  registerSegmindV1Routes(typed, deps);
  registerSegmindV2Routes(typed, deps);
  registerRequestEventRoutes(typed, deps);
  await app.register(multipart, { limits: { fileSize: deps.config.imageMaxBytes, files: OPENAI_MAX_IMAGES, fields: 32, fieldSize: 64 * 1024 } });
  registerOpenAiImageRoutes(typed, deps);
  registerOpenAiModelRoutes(typed, deps);
  registerAdminRoutes(typed, deps);
  registerOpenApiRoutes(typed);
  registerPlaygroundRoutes(typed);
  return app;
}

/** A path segment as the client meant it (its percent-escapes decoded), or as sent when malformed. */
function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Errors of a connection before Fastify has a request (Node's 'clientError'): a request or
 * headers timeout (408), headers too large (431), bytes that are not HTTP (400). Answered in
 * the envelope when no answer has begun on the socket, then the connection is closed.
 */
function answerClientError(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const apiErr =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new ApiError('request_timeout', 'The request was not received in time; the connection is closed')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new ApiError('headers_too_large')
        : new ApiError('bad_request', `The request is not valid HTTP (${err.code ?? 'parse error'})`);
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const id = randomUUID();
    const body = JSON.stringify(errorBody(apiErr, id));
    socket.write(
      `HTTP/1.1 ${apiErr.status} ${STATUS_CODES[apiErr.status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${id}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** Maps framework errors onto the error table; anything unknown is a 500. */
function toApiError(err: FastifyError | ApiError): ApiError {
  if (err instanceof ApiError) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('unsupported_media_type', 'Content-Type must be application/json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('payload_too_large', 'The body is larger than this server accepts');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('invalid_json', 'The body is not valid JSON');
    case 'FST_REQ_FILE_TOO_LARGE':
      return new ApiError('image_too_large', 'An uploaded image is larger than this server accepts');
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
    case 'FST_PARTS_LIMIT':
      return new ApiError('validation_failed', `Too many parts in the form (at most ${OPENAI_MAX_IMAGES} images)`);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError('invalid_json', 'Content-Length does not match the body');
    default:
      if (err.statusCode === 413) return new ApiError('payload_too_large');
      if (err.statusCode === 415) return new ApiError('unsupported_media_type');
      if (err.statusCode === 404) return new ApiError('not_found');
      if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
        return new ApiError('validation_failed', err.message);
      }
      return new ApiError('internal', 'Internal server error', { cause: err });
  }
}
