/**
 * POST /v1/{slug} — the synchronous, Segmind-compatible endpoint (contract §1), one route
 * per served model (contract §6; `/v1/flux-2-klein-4b` by default), each with its model's
 * defaults in its schema. Answers the image bytes with the x-… headers, or JSON with
 * base64 when asked.
 *
 * Only a delivered answer is charged: without an Idempotency-Key the request's charge is
 * held until its answer has gone out (charge-on-delivery.ts), and a client that goes away
 * at any moment before that — while its references are fetched, while it queues or runs,
 * once it has completed — has its request cancelled or released. With an
 * Idempotency-Key the request keeps running when its client goes away and is charged when
 * it completes, so the retry with the same key gets the image, charged once.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { microToCredits } from '../../billing/pricing.js';
import { bodiesFor } from '../../contract/request-schema.js';
import type { ServedModel } from '../../contract/models.js';
import { GeneratedImage } from '../../contract/responses.js';
import { authHook, modelAccessHook, requireCaller } from '../auth.js';
import type { App, AppDeps } from '../app.js';
import { admit, pricingOf } from '../generate.js';
import { outcomeError, outcomeOfRow, waitForOutcome } from '../../queue/outcomes.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import { admissionHook, cheapestPrice } from '../admission-hook.js';
import type { CompletedOutcome } from '../../queue/events.js';
import { chargeOnDelivery } from '../charge-on-delivery.js';
import { errorResponses, IdempotencyHeaders, IMAGE_CONTENT, IMAGE_HEADERS, modelOperationId, modelRouteDescription, ref, SECURED } from '../route-schema.js';

function schemaFor(model: ServedModel, first: boolean) {
  return {
    operationId: modelOperationId('generate', model, first),
    tags: ['generate'],
    summary: `Generate an image with ${model.slug} (synchronous, Segmind-compatible)`,
    description:
      'Answers the image bytes with the x-… headers; JSON with the image base64-encoded when the body asks (base64) or the Accept header prefers application/json. Only a 200 is charged. ' +
      modelRouteDescription(model),
    security: SECURED,
    headers: IdempotencyHeaders,
    body: ref(bodiesFor(model.variant).sync),
    response: {
      200: {
        description: 'The image (or JSON with base64 when asked)',
        headers: IMAGE_HEADERS,
        content: { ...IMAGE_CONTENT, 'application/json': { schema: ref(GeneratedImage) } },
      },
      ...errorResponses(400, 401, 403, 404, 406, 408, 409, 413, 422, 429, 500, 502, 503, 504),
    },
  };
}

export function registerSegmindV1Routes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const rate = rateLimitHook(deps.limiter);
  for (const model of deps.config.models.list) registerModelRoute(app, deps, model, [auth, rate]);
}

function registerModelRoute(app: App, deps: AppDeps, model: ServedModel, hooks: [ReturnType<typeof authHook>, ReturnType<typeof rateLimitHook>]): void {
  const admission = admissionHook(deps, { route: 'v1', floor: cheapestPrice(pricingOf(deps, model.slug)) });
  app.post(
    `/v1/${model.slug}`,
    { schema: schemaFor(model, model === deps.config.models.first), onRequest: [hooks[0], modelAccessHook(model.slug), hooks[1], admission], bodyLimit: deps.config.bodyLimitBytes },
    async (req, reply) => {
      const caller = requireCaller(req);
      const idem = req.headers['idempotency-key'];
      // Without an Idempotency-Key, a client that has gone cancels its request.
      const gone = idem === undefined ? req.clientGone : undefined;
      const admitted = await admit(deps, req, caller, req.body, { route: 'v1', model, idempotencyKey: idem, signal: gone, hold: idem === undefined });
      if (admitted.kind === 'existing') {
        // A replay: the finished result, or the one in flight; its own id in the header and any error body.
        reply.header('x-request-id', admitted.row.id);
        reply.header('idempotent-replayed', 'true');
        const wantBase64 = Boolean((JSON.parse(admitted.row.params) as { base64?: boolean }).base64);
        const outcome = (await outcomeOfRow(deps, admitted.row)) ?? (await deps.queue.waitFor(admitted.row.id));
        if (outcome.status !== 'COMPLETED') throw outcomeError(outcome);
        return sendImage(req, reply, outcome, wantBase64);
      }
      try {
        const outcome = await waitForOutcome(deps, admitted.id, gone);
        if (outcome.status !== 'COMPLETED') throw outcomeError(outcome);
        if (admitted.held) await chargeOnDelivery(deps, reply, [admitted.id], gone);
        return sendImage(req, reply, outcome, admitted.params.base64);
      } finally {
        admitted.releaseSlot();
      }
    },
  );
}

function sendImage(req: FastifyRequest, reply: FastifyReply, outcome: CompletedOutcome, base64: boolean) {
  const { output } = outcome;
  const cost = microToCredits(outcome.costMicro);
  const remaining = microToCredits(outcome.balanceMicro);
  reply.header('x-seed-value', String(output.seed));
  reply.header('x-generation-time', outcome.generationTimeS.toFixed(2));
  reply.header('x-cost', cost);
  reply.header('x-remaining-credits', remaining);
  if (base64 || prefersJson(req.headers.accept)) {
    return reply.type('application/json').send({
      image: output.bytes.toString('base64'),
      format: output.format,
      width: output.width,
      height: output.height,
      seed: output.seed,
      request_id: String(reply.getHeader('x-request-id') ?? req.id),
      generation_time: Number(outcome.generationTimeS.toFixed(3)),
      cost: Number(cost),
      remaining_credits: Number(remaining),
    });
  }
  return reply.type(output.contentType).send(output.bytes);
}

/** True when the Accept header ranks application/json above every image type. */
export function prefersJson(accept: string | undefined): boolean {
  if (!accept) return false;
  let json = -1;
  let image = -1;
  for (const part of accept.split(',')) {
    const [type = '', ...paramParts] = part.trim().toLowerCase().split(';');
    const qParam = paramParts.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    if (!Number.isFinite(q)) continue;
    if (type === 'application/json') json = Math.max(json, q);
    else if (type.startsWith('image/') || type === '*/*') image = Math.max(image, q);
  }
  return json > 0 && json > image;
}
