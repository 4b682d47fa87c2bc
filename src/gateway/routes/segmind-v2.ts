/**
 * The asynchronous API (contract §4): submit (POST /v2/{slug}, one route per served model,
 * contract §6), status, record, output, and cancel (the
 * event stream is request-events.ts). A request is visible only to its own account (404 otherwise),
 * and an expired request is a 404.
 *
 * Links (contract §9): the record's `output` and every `events_url` work without the key
 * until they expire. The output route takes either the key (the account check as ever) or
 * a signed link (`expires` and `sig`, which then decide alone: a key sent along is not
 * read), so a link handed to a browser or another service fetches the image:
 *
 *   key, or expires+sig ─ neither → 401 · tampered, moved, malformed → 403 invalid_link
 *                         expired → 403 link_expired · request expired or swept → 404
 */
import Type from 'typebox';
import { balance } from '../../accounts/ledger.js';
import { getRequestForAccount, type RequestRow } from '../../store/requests.js';
import { TERMINAL } from '../../contract/request-states.js';
import { CONTENT_TYPES } from '../../queue/storage-keys.js';
import type { ImageFormat } from '../../contract/types.js';
import { authHook, modelAccessHook, requireCaller } from '../auth.js';
import { keyOrLink, ownRow } from '../request-access.js';
import type { App, AppDeps } from '../app.js';
import { ApiError } from '../../contract/errors.js';
import { bodiesFor } from '../../contract/request-schema.js';
import type { ServedModel } from '../../contract/models.js';
import { Cancellation, RequestRecord, StatusView, Submitted, type RequestMetrics } from '../../contract/responses.js';
import { admit, pricingOf } from '../generate.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import { admissionHook, cheapestPrice } from '../admission-hook.js';
import { errorView, metricsOf, signedRecordView, urlsFor } from '../../store/record-view.js';
import { outputPath } from '../../storage/request-links.js';
import { baseUrl } from '../base-url.js';
import { errorResponses, IdempotencyHeaders, IMAGE_CONTENT, json, modelOperationId, modelRouteDescription, RATE_LIMITED_HEADERS, ref, RequestIdParams, SECURED } from '../route-schema.js';

const tagged = { tags: ['requests'], security: SECURED };

function submitSchema(model: ServedModel, first: boolean) {
  return {
    ...tagged,
    operationId: modelOperationId('submitRequest', model, first),
    summary: `Queue a generation with ${model.slug} (asynchronous)`,
    description:
      'Answers at once with the request id and its links; webhook_url gets one signed terminal event. When no worker serves the model (scaled to zero), the request waits in its queue. ' +
      modelRouteDescription(model),
    headers: IdempotencyHeaders,
    body: ref(bodiesFor(model.variant).async),
    response: { 200: json(ref(Submitted), 'Queued', RATE_LIMITED_HEADERS), ...errorResponses(400, 401, 403, 404, 406, 408, 413, 422, 429, 500, 502, 503) },
  };
}

const statusSchema = {
  ...tagged,
  operationId: 'getRequestStatus',
  summary: 'Status, queue position and progress',
  params: RequestIdParams,
  response: { 200: json(ref(StatusView), 'Status'), ...errorResponses(401, 404, 500) },
};

const recordSchema = {
  ...tagged,
  operationId: 'getRequest',
  summary: 'The request record (input, status, error, metrics, output)',
  params: RequestIdParams,
  querystring: Type.Object({ base64: Type.Optional(Type.Boolean({ description: 'output as the image base64-encoded instead of a link' })) }),
  response: { 200: json(ref(RequestRecord), 'Record'), ...errorResponses(400, 401, 404, 500) },
};

const outputSchema = {
  tags: tagged.tags,
  // The key, or none at all with `expires` and `sig` (an OpenAPI `{}`: anonymous allowed).
  security: [...SECURED, {}],
  operationId: 'getRequestOutput',
  summary: 'The output image',
  description:
    "With the API key, or without one through a signed link: the record's `output` (and OpenAI `url` answers, webhook payloads) " +
    'carries `expires` and `sig`, valid for KLEIN_LINK_TTL seconds. A tampered or moved link is a 403 invalid_link, an expired one a 403 link_expired ' +
    '(GET /v2/requests/{id} hands out a fresh one).',
  params: RequestIdParams,
  querystring: Type.Object({
    expires: Type.Optional(Type.String({ description: 'Signed link: when it expires (Unix seconds); with sig, replaces the API key' })),
    sig: Type.Optional(Type.String({ description: "Signed link: HMAC-SHA256 of the path and expires under the server's link secret (base64url)" })),
  }),
  response: {
    200: { description: 'The image', headers: { 'x-seed-value': Type.Integer({ description: 'The seed used' }) }, content: IMAGE_CONTENT },
    ...errorResponses(401, 403, 404, 500),
  },
};

const cancelSchema = {
  ...tagged,
  operationId: 'cancelRequest',
  summary: 'Cancel a queued or running request (not charged)',
  params: RequestIdParams,
  response: { 200: json(ref(Cancellation), 'Cancelled or already finished', RATE_LIMITED_HEADERS), ...errorResponses(401, 404, 413, 429, 500) },
};

export function registerSegmindV2Routes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const rate = rateLimitHook(deps.limiter);
  const outputAccess = keyOrLink(auth, deps.links, outputPath);

  for (const model of deps.config.models.list) {
    const admission = admissionHook(deps, { route: 'v2', floor: cheapestPrice(pricingOf(deps, model.slug)) });
    const onRequest = [auth, modelAccessHook(model.slug), rate, admission];
    app.post(`/v2/${model.slug}`, { schema: submitSchema(model, model === deps.config.models.first), onRequest, bodyLimit: deps.config.bodyLimitBytes }, async (req, reply) => {
      const caller = requireCaller(req);
      // A client that leaves before its request is queued never learns its id: nothing is queued for it.
      const a = await admit(deps, req, caller, req.body, { route: 'v2', model, idempotencyKey: req.headers['idempotency-key'], signal: req.clientGone });
      const id = a.kind === 'new' ? a.id : a.row.id;
      if (a.kind === 'existing') reply.header('idempotent-replayed', 'true');
      reply.header('x-request-id', id);
      const status = a.kind === 'new' ? 'QUEUED' : a.row.status;
      return { request_id: id, status, ...urlsFor(baseUrl(deps, req), id, deps.links) };
    });
  }

  app.get('/v2/requests/:id/status', { schema: statusSchema, onRequest: auth }, async (req) => {
    const row = await ownRow(deps, req, req.params.id);
    const p = row.status === 'PROCESSING' ? await deps.queue.lastProgress(row.id) : null;
    return {
      request_id: row.id,
      status: row.status,
      queue_position: row.status === 'QUEUED' ? await deps.queue.position(row.id) : 0,
      progress: row.status === 'COMPLETED' ? { step: stepsOf(row), total: stepsOf(row) } : p ? { step: p.step, total: p.total } : null,
      error: errorView(row),
      // store/record-view.ts writes every key of RequestMetrics (its type says only Record);
      // the response schema's serializer refuses an answer without them.
      metrics: metricsOf(row) as RequestMetrics,
    };
  });

  app.get('/v2/requests/:id', { schema: recordSchema, onRequest: auth }, async (req) => {
    const row = await ownRow(deps, req, req.params.id);
    let output: string | undefined;
    if (row.status === 'COMPLETED' && row.output_key && req.query.base64 === true) {
      const bytes = await deps.storage.get(row.output_key);
      if (!bytes) throw new ApiError('not_found', `The output of ${row.id} has expired`);
      output = bytes.toString('base64');
    }
    // As metrics above: the record view's type is the store's, its shape this schema's.
    return (await signedRecordView(row, baseUrl(deps, req), deps.links, { output, remainingMicro: await balance(deps.db, row.account_id) })) as RequestRecord;
  });

  app.get('/v2/requests/:id/output', { schema: outputSchema, onRequest: outputAccess.hook }, async (req, reply) => {
    const row = await outputAccess.row(deps, req, req.params.id);
    if (row.status !== 'COMPLETED' || !row.output_key) {
      throw new ApiError('not_found', `Request ${row.id} has no output (status ${row.status})`);
    }
    const bytes = await deps.storage.get(row.output_key);
    if (!bytes) throw new ApiError('not_found', `The output of ${row.id} has expired`);
    reply.header('x-seed-value', String(row.seed));
    return reply.type(CONTENT_TYPES[(row.output_format ?? 'png') as ImageFormat]).send(bytes);
  });

  app.post('/v2/requests/:id/cancel', { schema: cancelSchema, onRequest: [auth, rate] }, async (req) => {
    const row = await ownRow(deps, req, req.params.id);
    const cancelled = TERMINAL.has(row.status) ? false : await deps.queue.cancel(row.id, 'user');
    if (cancelled && row.status === 'PROCESSING') await deps.queue.waitFor(row.id);
    const after = (await getRequestForAccount(deps.db, row.id, row.account_id)) ?? row;
    return { request_id: row.id, status: after.status, cancelled };
  });
}

function stepsOf(row: RequestRow): number {
  return Number((JSON.parse(row.params) as { steps?: number }).steps ?? 0);
}
