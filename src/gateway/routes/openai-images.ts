/**
 * OpenAI-compatible image routes, mapped onto the same pipeline, limits and credits:
 *   POST /v1/images/generations  (JSON)
 *   POST /v1/images/edits        (multipart: `image` or `image[]`, 1 to 4 files)
 * Auth with `Authorization: Bearer <key>` (or x-api-key). The body is validated from one
 * schema (contract/openai-schema.ts) as strictly as the Segmind body; multipart fields are
 * read back into numbers and booleans under the same rules. A malformed form is a 400.
 *
 * A call of `n` images is all or nothing (contract §8): the n requests are queued with
 * their charges held; the answer is 200 only when every image completed, and all n are
 * settled in one transaction once it has been written out (charge-on-delivery.ts). Any
 * other answer — one image refused at admission (406, 429), failed, timed out, or the
 * client gone — cancels the others and releases every one, images that already finished
 * included. A 200 lists every image's request id.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { authHook, requireCaller } from '../auth.js';
import type { AppDeps } from '../app.js';
import { ApiError } from '../../contract/errors.js';
import { admit, summarise, type Admitted } from '../generate.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import { admissionHook } from '../admission-hook.js';
import { outcomeError, waitForOutcome } from '../../queue/outcomes.js';
import { chargeOnDelivery } from '../charge-on-delivery.js';
import { baseUrl } from '../base-url.js';
import { MODEL_SLUG } from '../../contract/models.js';
import { urlsFor } from '../../store/record-view.js';
import type { CompletedOutcome, JobOutcome } from '../../queue/events.js';
import { releaseUndelivered } from '../../queue/delivery.js';
import { validateBody } from '../../contract/validate.js';
import { fromFormFields, OPENAI_MAX_IMAGES, OpenAiImagesBody, type OpenAiImagesInput } from '../../contract/openai-schema.js';

const MODELS = new Set([MODEL_SLUG]);

function bad(field: string, message: string): ApiError {
  return new ApiError('validation_failed', `${field}: ${message}`, { details: [{ field, message }] });
}

/** Validated OpenAI body → a Segmind body for image `i` (validated again by admit). */
function toSegmind(b: OpenAiImagesInput, images: string[], i: number): Record<string, unknown> {
  const out: Record<string, unknown> = { prompt: b.prompt };
  const size = b.size ?? 'auto';
  if (size === 'auto') {
    if (images.length > 0) out.aspect_ratio = 'match_input_image';
  } else {
    const [w, h] = size.split('x').map(Number);
    out.width = w;
    out.height = h;
  }
  if (b.output_format !== undefined) out.image_format = b.output_format;
  if (b.output_compression !== undefined) out.quality = Math.max(10, b.output_compression);
  for (const k of ['steps', 'cfg', 'negative_prompt', 'sampler', 'go_fast'] as const) if (b[k] !== undefined) out[k] = b[k];
  if (b.seed !== undefined) out.seed = Math.min(b.seed + i, Number.MAX_SAFE_INTEGER);
  else if ((b.n ?? 1) > 1) out.seed = -1;
  if (images.length > 0) out.image_urls = images;
  return out;
}

function parseBody(body: unknown): OpenAiImagesInput {
  const v = validateBody<OpenAiImagesInput>(body, OpenAiImagesBody);
  if (!v.ok) throw new ApiError('validation_failed', summarise(v.details), { details: v.details });
  const b = v.value;
  if (b.stream === true) throw bad('stream', 'streaming is not supported here; follow a request with /v2 events instead');
  if (b.model !== undefined && !MODELS.has(b.model)) throw bad('model', `must be one of ${[...MODELS].join(', ')}, got ${JSON.stringify(b.model.slice(0, 64))}`);
  return b;
}

type New = Extract<Admitted, { kind: 'new' }>;

/** Waits for every image; the first one that does not complete cancels the rest. */
async function waitAll(deps: AppDeps, admitted: New[], gone: AbortSignal | undefined): Promise<JobOutcome[]> {
  let failed = false;
  return Promise.all(
    admitted.map(async (a) => {
      const o = await waitForOutcome(deps, a.id, gone);
      if (o.status !== 'COMPLETED' && !failed) {
        failed = true;
        for (const other of admitted) if (other.id !== a.id) await deps.queue.cancel(other.id, 'call_failed').catch(() => false);
      }
      return o;
    }),
  );
}

async function generateImages(deps: AppDeps, req: FastifyRequest, reply: FastifyReply, b: OpenAiImagesInput, images: string[]) {
  const caller = requireCaller(req);
  const gone = req.clientGone;
  const n = b.n ?? 1;
  const responseFormat = b.response_format ?? 'b64_json';
  const admitted: New[] = [];
  try {
    try {
      for (let i = 0; i < n; i++) {
        const a = await admit(deps, req, caller, toSegmind(b, images, i), { route: 'v1', id: i === 0 ? req.id : randomUUID(), signal: gone, hold: true });
        if (a.kind !== 'new') throw new ApiError('internal', 'unexpected replay');
        admitted.push(a);
      }
    } catch (err) {
      // One image refused (406, 429, a bad reference, the client gone): the call is refused
      // whole. The others are cancelled and waited for, so one that was just completing is
      // released here too rather than held until the repair sweep.
      for (const a of admitted) await deps.queue.cancel(a.id, 'call_failed').catch(() => false);
      await Promise.all(admitted.map((a) => deps.queue.waitFor(a.id)));
      await releaseUndelivered(deps.db, deps.storage, admitted.map((a) => a.id), 'another image of its call was refused; not charged');
      throw err;
    }
    const ids = admitted.map((a) => a.id);
    const outcomes = await waitAll(deps, admitted, gone);
    const notDone = outcomes.filter((o): o is Exclude<JobOutcome, CompletedOutcome> => o.status !== 'COMPLETED');
    if (notDone.length > 0) {
      await releaseUndelivered(deps.db, deps.storage, ids, 'another image of its call failed; not charged');
      // The cause, not the cancels it caused.
      throw outcomeError(notDone.find((o) => !(o.status === 'CANCELLED' && o.reason === 'call_failed')) ?? notDone[0]!);
    }
    const done = outcomes as CompletedOutcome[];
    await chargeOnDelivery(deps, reply, ids, gone);
    const last = done[done.length - 1]!;
    reply.header('x-cost', done.reduce((s, o) => s + o.costMicro, 0) / 1e6);
    reply.header('x-remaining-credits', Math.min(...done.map((o) => o.balanceMicro)) / 1e6);
    const base = baseUrl(deps, req);
    return {
      created: Math.floor(Date.now() / 1000),
      data: done.map((o, i) => ({
        ...(responseFormat === 'url' ? { url: urlsFor(base, ids[i]!).output_url } : { b64_json: o.output.bytes.toString('base64') }),
        revised_prompt: null,
        request_id: ids[i],
        seed: o.output.seed,
      })),
      output_format: last.output.format,
      size: `${last.output.width}x${last.output.height}`,
      usage: { seeds: done.map((o) => o.output.seed) },
    };
  } finally {
    for (const a of admitted) a.releaseSlot();
  }
}

/** Reads a multipart form: 1 to 4 images and the fields; a malformed form is a 400. */
async function readForm(req: FastifyRequest): Promise<{ fields: Record<string, string>; images: string[] }> {
  const fields: Record<string, string> = {};
  const images: string[] = [];
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        const buf = await part.toBuffer();
        if (part.fieldname !== 'image' && part.fieldname !== 'image[]') throw bad(part.fieldname, 'unexpected file; send images as image or image[]');
        if (images.length >= OPENAI_MAX_IMAGES) throw bad('image', `at most ${OPENAI_MAX_IMAGES} images`);
        const mime = /png|jpeg|webp/.exec(part.mimetype)?.[0] ?? sniff(buf);
        images.push(`data:image/${mime};base64,${buf.toString('base64')}`);
      } else {
        if (Object.prototype.hasOwnProperty.call(fields, part.fieldname)) throw bad(part.fieldname, 'is given more than once');
        if (typeof part.value !== 'string') throw bad(part.fieldname, 'must be a text field');
        fields[part.fieldname] = part.value;
      }
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw multipartError(err);
  }
  if (images.length === 0) throw bad('image', 'at least one image is required');
  return { fields, images };
}

/** The form parser's errors, as 400s (too large and too many parts keep their own codes). */
function multipartError(err: unknown): ApiError {
  const code = (err as { code?: string }).code;
  if (code === 'FST_REQ_FILE_TOO_LARGE') return new ApiError('image_too_large', 'An uploaded image is larger than this server accepts');
  if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') return new ApiError('validation_failed', 'Too many parts in the form (at most 4 images)');
  const why = err instanceof Error ? err.message : String(err);
  return new ApiError('invalid_multipart', `The multipart/form-data body is malformed: ${why}`, { cause: err });
}

export function registerOpenAiImageRoutes(app: FastifyInstance, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const rate = rateLimitHook(deps.limiter);
  const admission = admissionHook(deps, { route: 'v1' });
  const route = { onRequest: [auth, rate, admission], bodyLimit: deps.config.bodyLimitBytes };

  app.post('/v1/images/generations', route, async (req, reply) => {
    return generateImages(deps, req, reply, parseBody(req.body), []);
  });

  app.post('/v1/images/edits', route, async (req, reply) => {
    if (!req.isMultipart()) throw new ApiError('unsupported_media_type', 'Content-Type must be multipart/form-data');
    const { fields, images } = await readForm(req);
    return generateImages(deps, req, reply, parseBody(fromFormFields(fields)), images);
  });
}

/** The data: URI needs a type; the decoder sniffs the bytes again regardless. */
function sniff(b: Buffer): string {
  if (b[0] === 0xff && b[1] === 0xd8) return 'jpeg';
  if (b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  return 'png';
}
