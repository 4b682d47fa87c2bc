/**
 * buildApp(deps) builds the Fastify instance without listening (tests use `inject()`);
 * src/cli/serve.ts listens.
 *
 * Request lifecycle of POST /v1/flux-2-klein-4b, in the order the code runs it, with the
 * status each stage can produce:
 *
 *   onRequest   request id → auth (401) → rate limit (429)            [before the body is read]
 *   parse       content type (400) → size (413) → JSON (400)
 *   handler     model slug (404) → validate (400) → readiness (503/502)
 *               → fetch + decode references (400) → resolve size, price
 *               → concurrency slot (429) → reserve credits (406) → enqueue
 *               → wait: engine error (502), timeout (504, cancelled), client gone (cancelled)
 *               → encode → settle → 200 with the image
 *   any bug     500 with the request id, logged, no stack trace in the body
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { PricingConfig } from '../contract/pricing.js';
import type { Database } from '../store/schema.js';
import type { JobQueue } from '../queue/types.js';
import { ApiError, errorBody } from './errors.js';
import type { Limiter } from './limits.js';
import type { Metrics } from './metrics.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerSegmindV1Routes } from './routes/segmind-v1.js';
import { registerSegmindV2Routes } from './routes/segmind-v2.js';
import type { OutputStorage } from '../storage/types.js';
import { registerAccountRoutes } from './routes/account.js';
import { registerAdminRoutes } from './routes/admin.js';
import { registerOpenApiRoutes } from './openapi.js';
import multipart from '@fastify/multipart';
import { registerOpenAiImageRoutes } from './routes/openai-images.js';
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
  pricing: PricingConfig;
  storage: OutputStorage;
  /** Set while the server drains on shutdown: new work gets 503. */
  draining?: () => boolean;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.logger as unknown as FastifyBaseLogger,
    bodyLimit: deps.config.bodyLimitBytes,
    genReqId: () => randomUUID(),
    return503OnClosing: false,
  });

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
    try {
      done(null, JSON.parse((body as Buffer).toString('utf8')));
    } catch {
      done(new ApiError('invalid_json', 'The body is not valid JSON'), undefined);
    }
  });

  // While draining, every answer closes its connection, so keep-alive clients do not hold
  // the server open after their last response (server.close() waits for them).
  app.addHook('onSend', async (_req, reply) => {
    if (deps.draining?.()) reply.header('connection', 'close');
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
    return reply.status(apiErr.status).type('application/json').send(errorBody(apiErr, req.id));
  });

  app.setNotFoundHandler((req, reply) => {
    const err = new ApiError('not_found', `No route ${req.method} ${req.url.split('?')[0]}`);
    return reply.status(404).type('application/json').send(errorBody(err, req.id));
  });

  registerHealthRoutes(app, deps);
  registerAccountRoutes(app, deps);
  registerSegmindV1Routes(app, deps);
  registerSegmindV2Routes(app, deps);
  await app.register(multipart, { limits: { fileSize: deps.config.imageMaxBytes, files: 4, fields: 32, fieldSize: 64 * 1024 } });
  registerOpenAiImageRoutes(app, deps);
  registerAdminRoutes(app, deps);
  registerOpenApiRoutes(app);
  registerPlaygroundRoutes(app);
  return app;
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
      return new ApiError('validation_failed', 'Too many parts in the form (at most 4 images)');
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
