/**
 * POST /v1/flux-2-klein-4b — the synchronous, Segmind-compatible endpoint (contract §1).
 * Answers the image bytes with the x-… headers, or JSON with base64 when asked.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { microToCredits } from '../../contract/pricing.js';
import { ApiError } from '../errors.js';
import { authHook, requireCaller } from '../auth.js';
import type { AppDeps } from '../app.js';
import { admit } from '../generate.js';
import { outcomeOfRow } from '../outcomes.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import type { JobOutcome } from '../../queue/events.js';

export const MODEL_SLUG = 'flux-2-klein-4b';

export function registerSegmindV1Routes(app: FastifyInstance, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const rate = rateLimitHook(deps.limiter);

  app.post<{ Params: { model: string } }>(
    '/v1/:model',
    { onRequest: [auth, rate] },
    async (req, reply) => {
      if (req.params.model !== MODEL_SLUG) {
        throw new ApiError('not_found', `Unknown model "${req.params.model}": this server serves ${MODEL_SLUG}`);
      }
      const caller = requireCaller(req);
      const idem = req.headers['idempotency-key'];
      const admitted = await admit(deps, req, caller, req.body, { route: 'v1', idempotencyKey: typeof idem === 'string' ? idem : undefined });
      if (admitted.kind === 'existing') {
        // A replay: the finished result, or the one in flight.
        reply.header('x-request-id', admitted.row.id);
        reply.header('idempotent-replayed', 'true');
        const wantBase64 = Boolean((JSON.parse(admitted.row.params) as { base64?: boolean }).base64);
        const outcome = (await outcomeOfRow(deps, admitted.row)) ?? (await deps.queue.waitFor(admitted.row.id));
        return sendOutcome(req, reply, outcome, wantBase64);
      }
      try {
        const outcome = await waitForOutcome(deps, req, reply, admitted.id);
        return sendOutcome(req, reply, outcome, admitted.params.base64);
      } finally {
        admitted.releaseSlot();
      }
    },
  );
}

/**
 * Waits for the job; cancels it (uncharged) when the sync timeout passes (504) or the
 * client goes away before the answer.
 */
export async function waitForOutcome(deps: AppDeps, req: FastifyRequest, reply: FastifyReply, id: string): Promise<JobOutcome> {
  const done = deps.queue.waitFor(id);
  const timeoutMs = deps.config.syncTimeoutS * 1000;
  let timer: NodeJS.Timeout | undefined;
  const onClose = () => {
    if (!reply.raw.writableEnded) void deps.queue.cancel(id, 'client_gone');
  };
  req.raw.socket?.once('close', onClose);
  try {
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const first = await Promise.race([done, timedOut]);
    if (first !== 'timeout') return first;
    await deps.queue.cancel(id, 'timeout');
    // The cancel settles the job; a job that finished in the same instant keeps its result.
    return await done;
  } finally {
    if (timer) clearTimeout(timer);
    req.raw.socket?.off('close', onClose);
  }
}

function sendOutcome(req: FastifyRequest, reply: FastifyReply, outcome: JobOutcome, base64: boolean) {
  if (outcome.status === 'FAILED') throw outcome.error;
  if (outcome.status === 'CANCELLED') {
    if (outcome.reason === 'timeout') throw new ApiError('timeout', 'The request did not finish within the sync timeout; it was cancelled and not charged');
    if (outcome.reason === 'shutdown') throw new ApiError('draining', 'The server is shutting down', { headers: { 'retry-after': '30' } });
    throw new ApiError('internal', 'The request was cancelled');
  }
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
