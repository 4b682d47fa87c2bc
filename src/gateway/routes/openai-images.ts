/**
 * OpenAI-compatible image routes, mapped onto the same pipeline, limits and credits:
 *   POST /v1/images/generations  (JSON)
 *   POST /v1/images/edits        (multipart: `image` or `image[]`, 1 to 4 files)
 * Auth with `Authorization: Bearer <key>` (or x-api-key). The body is validated from one
 * schema (contract/openai-schema.ts) as strictly as the Segmind body: by the route for JSON,
 * by the handler for a form once read, its fields read back into numbers and booleans under
 * the same rules. A malformed form is a 400. Each image's Segmind body, made from it, is
 * validated as the Segmind routes' are (a `size` of 100x100 is refused for its width).
 *
 * A call of `n` images is all or nothing (contract §8): the n requests are queued with
 * their charges held; the answer is 200 only when every image completed, and all n are
 * settled in one transaction once it has been written out (charge-on-delivery.ts). Any
 * other answer — one image refused at admission (406, 429), failed, timed out, or the
 * client gone — cancels the others and releases every one, images that already finished
 * included. A 200 lists every image's request id.
 *
 * Errors are answered in OpenAI's envelope `{"error": {message, type, param, code}}` with
 * our statuses (openai-errors.ts); `model` takes the served slug or an alias of it
 * (openai-model-names.ts; GET /v1/models lists them).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { assertModelAllowed, authHook, requireCaller } from '../auth.js';
import type { App, AppDeps } from '../app.js';
import { ApiError } from '../../contract/errors.js';
import type { GenerateInput } from '../../contract/request-schema.js';
import { admit, pricingOf, type Admitted } from '../generate.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import { admissionHook, cheapestPrice } from '../admission-hook.js';
import { outcomeError, waitForOutcome } from '../../queue/outcomes.js';
import { chargeOnDelivery } from '../charge-on-delivery.js';
import { baseUrl } from '../base-url.js';
import { outputKey } from '../../queue/storage-keys.js';
import type { CompletedOutcome, JobOutcome } from '../../queue/events.js';
import { releaseUndelivered } from '../../queue/delivery.js';
import { validateBody, validateGenerateBody, validationFailed } from '../../contract/validate.js';
import { fromFormFields, OPENAI_MAX_IMAGES, OpenAiEditsForm, OpenAiImagesBody, OpenAiImagesResponse, type OpenAiImagesInput } from '../../contract/openai-schema.js';
import { openAiErrorResponses, json, RATE_LIMITED_HEADERS, ref, SECURED } from '../route-schema.js';
import Type from 'typebox';
import { openAiErrorHook } from '../openai-errors.js';
import { modelNames, servedModel } from '../openai-model-names.js';

function bad(field: string, message: string): ApiError {
  return new ApiError('validation_failed', `${field}: ${message}`, { details: [{ field, message }] });
}

/** Validated OpenAI body → the Segmind body of image `i`, validated as the Segmind routes validate theirs. */
function segmindInput(b: OpenAiImagesInput, images: string[], i: number): GenerateInput {
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
  for (const k of ['steps', 'cfg', 'negative_prompt', 'sampler', 'go_fast', 'loras'] as const) if (b[k] !== undefined) out[k] = b[k];
  if (b.seed !== undefined) out.seed = Math.min(b.seed + i, Number.MAX_SAFE_INTEGER);
  else if ((b.n ?? 1) > 1) out.seed = -1;
  if (images.length > 0) out.image_urls = images;
  const v = validateGenerateBody(out, { allowWebhook: false });
  if (!v.ok) throw validationFailed(v.details);
  return v.value;
}

/**
 * What the schema lets through but this server does not offer: streaming, another model.
 * `model` may be absent, the served slug or an alias of it (KLEIN_OPENAI_MODEL_ALIASES); the
 * answer names no model, as OpenAI's images answer names none.
 */
function offered(deps: AppDeps, b: OpenAiImagesInput): OpenAiImagesInput {
  if (b.stream === true) throw bad('stream', 'streaming is not supported here; follow a request with /v2 events instead');
  if (servedModel(deps.config, b.model) === undefined) {
    throw bad('model', `must be one of ${modelNames(deps.config).join(', ')} (GET /v1/models), got ${JSON.stringify(b.model?.slice(0, 64))}`);
  }
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
  const model = deps.config.models.get(servedModel(deps.config, b.model) ?? '');
  if (!model) throw new ApiError('internal', 'offered() lets only served models through');
  assertModelAllowed(caller, model.slug);
  const gone = req.clientGone;
  const n = b.n ?? 1;
  const responseFormat = b.response_format ?? 'b64_json';
  const admitted: New[] = [];
  try {
    try {
      for (let i = 0; i < n; i++) {
        const a = await admit(deps, req, caller, segmindInput(b, images, i), { route: 'v1', model, id: i === 0 ? req.id : randomUUID(), signal: gone, hold: true });
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
    // `url` works without the key until it expires, as OpenAI's do (contract §9): presigned on S3, else signed here.
    const urls = responseFormat === 'url' ? await Promise.all(admitted.map(({ id }, i) => deps.links.output(base, id, outputKey(id, done[i]!.output.format)))) : [];
    return {
      created: Math.floor(Date.now() / 1000),
      data: admitted.map(({ id }, i) => {
        const { output } = done[i]!;
        return {
          ...(responseFormat === 'url' ? { url: urls[i]! } : { b64_json: output.bytes.toString('base64') }),
          revised_prompt: null,
          request_id: id,
          seed: output.seed,
        };
      }),
      output_format: last.output.format,
      size: `${last.output.width}x${last.output.height}`,
      usage: { seeds: done.map((o) => o.output.seed) },
    };
  } finally {
    for (const a of admitted) a.releaseSlot();
  }
}

/**
 * Reads a multipart form of at most `limit` bytes. @fastify/multipart's limits are per part
 * only, so a form sent without a Content-Length (chunked) is counted here as it arrives, and
 * refused with 413 once past the limit, without waiting for the parts being read.
 */
async function readForm(req: FastifyRequest, limit: number): Promise<{ fields: Record<string, string>; images: string[] }> {
  let seen = 0;
  let overLimit: (err: ApiError) => void = () => undefined;
  const tooLarge = new Promise<never>((_, reject) => (overLimit = reject));
  const count = (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > limit) {
      req.raw.off('data', count);
      overLimit(new ApiError('payload_too_large', 'The body is larger than this server accepts'));
    }
  };
  // Counted once the form parser reads the request (readParts pipes it before its first
  // await), so the counter never starts the stream flowing on its own.
  const parts = readParts(req);
  req.raw.on('data', count);
  try {
    return await Promise.race([parts, tooLarge]);
  } finally {
    req.raw.off('data', count);
  }
}

/** The parts of a multipart form: 1 to OPENAI_MAX_IMAGES images and the fields; a malformed form is a 400. */
async function readParts(req: FastifyRequest): Promise<{ fields: Record<string, string>; images: string[] }> {
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
  if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') return new ApiError('validation_failed', `Too many parts in the form (at most ${OPENAI_MAX_IMAGES} images)`);
  const why = err instanceof Error ? err.message : String(err);
  return new ApiError('invalid_multipart', `The multipart/form-data body is malformed: ${why}`, { cause: err });
}

const imageHeaders = {
  ...RATE_LIMITED_HEADERS,
  'x-cost': Type.String({ description: 'Credits charged for the call (every image)' }),
  'x-remaining-credits': Type.String({ description: 'The balance after it' }),
};
const responses = {
  200: json(ref(OpenAiImagesResponse), '{created, data: [{b64_json} | {url}]}', imageHeaders),
  ...openAiErrorResponses(400, 401, 403, 406, 408, 409, 413, 429, 500, 502, 503, 504),
};
const tagged = { tags: ['openai'], security: SECURED };

const generationsSchema = {
  ...tagged,
  operationId: 'createImage',
  summary: `OpenAI-compatible: generate n (1–${OPENAI_MAX_IMAGES}) images`,
  body: ref(OpenAiImagesBody),
  response: responses,
};

const editsSchema = {
  ...tagged,
  operationId: 'createImageEdit',
  summary: `OpenAI-compatible: edit with 1–${OPENAI_MAX_IMAGES} reference images (multipart: image or image[])`,
  // The form is read by the handler (readForm), which validates its fields with OpenAiImagesBody.
  body: { content: { 'multipart/form-data': { schema: ref(OpenAiEditsForm) } } },
  response: responses,
};

export function registerOpenAiImageRoutes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const rate = rateLimitHook(deps.limiter);
  // The model is in the body, so the floor before it is read is the cheapest served model's.
  const floor = Math.min(...deps.config.models.slugs.map((slug) => cheapestPrice(pricingOf(deps, slug))));
  const admission = admissionHook(deps, { route: 'v1', floor });
  const onRequest = [auth, rate, admission];
  // Errors in OpenAI's envelope (contract §8), so OpenAI clients raise with the reason.
  const preSerialization = openAiErrorHook;

  app.post('/v1/images/generations', { schema: generationsSchema, onRequest, preSerialization, bodyLimit: deps.config.bodyLimitBytes }, async (req, reply) => {
    return generateImages(deps, req, reply, offered(deps, req.body), []);
  });

  app.post('/v1/images/edits', { schema: editsSchema, onRequest, preSerialization, bodyLimit: deps.config.bodyLimitBytes }, async (req, reply) => {
    if (!req.isMultipart()) throw new ApiError('unsupported_media_type', 'Content-Type must be multipart/form-data');
    // @fastify/multipart streams the form to busboy and never applies the route's bodyLimit
    // (its limits are per part): a declared length over it is refused before a byte is read,
    // as the JSON parser does on the other routes.
    if (Number(req.headers['content-length']) > deps.config.bodyLimitBytes) {
      throw new ApiError('payload_too_large', 'The body is larger than this server accepts');
    }
    const { fields, images } = await readForm(req, deps.config.bodyLimitBytes);
    const v = validateBody(fromFormFields(fields), OpenAiImagesBody);
    if (!v.ok) throw validationFailed(v.details);
    return generateImages(deps, req, reply, offered(deps, v.value), images);
  });
}

/** The data: URI needs a type; the decoder sniffs the bytes again regardless. */
function sniff(b: Buffer): string {
  if (b[0] === 0xff && b[1] === 0xd8) return 'jpeg';
  if (b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  return 'png';
}
