/**
 * OpenAI-compatible image routes, mapped onto the same pipeline, limits and credits:
 *   POST /v1/images/generations  (JSON)
 *   POST /v1/images/edits        (multipart: `image` or `image[]`, 1 to 4 files)
 * Auth with `Authorization: Bearer <key>` (or x-api-key). `n` images run as n requests,
 * each priced and charged on its own; when some fail and others succeed, the answer holds
 * the ones that succeeded (only those are charged); when all fail, the first error is the
 * answer. Errors keep this server's envelope (`error` is the message OpenAI clients show).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { authHook, requireCaller } from '../auth.js';
import type { AppDeps } from '../app.js';
import { ApiError, type FieldError } from '../errors.js';
import { admit, type Admitted } from '../generate.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import { waitForOutcome } from './segmind-v1.js';
import { baseUrl } from './segmind-v2.js';
import { urlsFor } from '../records.js';
import type { JobOutcome } from '../../queue/events.js';

/** Fields OpenAI clients send that have no meaning here; accepted and ignored. */
const IGNORED = new Set(['quality', 'style', 'user', 'background', 'moderation', 'input_fidelity', 'partial_images', 'stream']);
const OWN = new Set(['prompt', 'model', 'n', 'size', 'response_format', 'output_format', 'output_compression', 'seed', 'steps', 'cfg', 'negative_prompt', 'sampler', 'go_fast']);
const MODELS = new Set(['flux-2-klein-4b']);

interface OpenAiRequest {
  body: Record<string, unknown>;
  images: string[];
  /** Multipart fields are strings: numbers and booleans are read back from them. JSON is strict. */
  multipart: boolean;
}

function bad(field: string, message: string): ApiError {
  return new ApiError('validation_failed', `${field}: ${message}`, { details: [{ field, message }] });
}

/** OpenAI body → a Segmind body for one image (validated again by the shared validator). */
function toSegmind(r: OpenAiRequest, i: number): { body: Record<string, unknown>; n: number; responseFormat: 'b64_json' | 'url' } {
  const b = r.body;
  const details: FieldError[] = [];
  for (const k of Object.keys(b)) if (!OWN.has(k) && !IGNORED.has(k)) details.push({ field: k, message: `is not a known field; allowed: ${[...OWN].join(', ')}` });
  if (b.stream === true || b.stream === 'true') details.push({ field: 'stream', message: 'streaming is not supported here; use /v2 events' });
  if (b.model !== undefined && !MODELS.has(String(b.model))) details.push({ field: 'model', message: `must be one of ${[...MODELS].join(', ')}` });
  const n = b.n === undefined ? 1 : Number(b.n);
  if (!Number.isInteger(n) || n < 1 || n > 4) details.push({ field: 'n', message: 'must be an integer from 1 to 4' });
  const rf = b.response_format ?? 'b64_json';
  if (rf !== 'b64_json' && rf !== 'url') details.push({ field: 'response_format', message: 'must be b64_json or url' });
  if (details.length > 0) throw new ApiError('validation_failed', `${details[0]!.field}: ${details[0]!.message}`, { details });

  const out: Record<string, unknown> = { prompt: b.prompt };
  const size = b.size === undefined ? 'auto' : String(b.size);
  if (size === 'auto') {
    if (r.images.length > 0) out.aspect_ratio = 'match_input_image';
  } else {
    const m = /^(\d{2,4})x(\d{2,4})$/.exec(size);
    if (!m) throw bad('size', 'must be WIDTHxHEIGHT (multiples of 16, 64 to 2048) or auto');
    out.width = Number(m[1]);
    out.height = Number(m[2]);
  }
  if (b.output_format !== undefined) out.image_format = b.output_format;
  if (b.output_compression !== undefined) {
    const c = Number(b.output_compression);
    if (!Number.isInteger(c) || c < 0 || c > 100) throw bad('output_compression', 'must be an integer from 0 to 100');
    out.quality = Math.max(10, c);
  }
  for (const k of ['steps', 'cfg', 'negative_prompt', 'sampler', 'go_fast'] as const) if (b[k] !== undefined) out[k] = r.multipart ? fromFormField(b[k]) : b[k];
  if (b.seed !== undefined) {
    const seed = Number(b.seed);
    out.seed = Number.isSafeInteger(seed) && seed >= 0 ? seed + i : b.seed;
  } else if (n > 1) {
    out.seed = -1;
  }
  if (r.images.length > 0) out.image_urls = r.images;
  return { body: out, n, responseFormat: rf as 'b64_json' | 'url' };
}

/** Multipart fields arrive as strings; numbers and booleans are read back from them. */
function fromFormField(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  return /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
}

async function generateImages(deps: AppDeps, req: FastifyRequest, reply: FastifyReply, r: OpenAiRequest) {
  const caller = requireCaller(req);
  const first = toSegmind(r, 0);
  const admitted: Array<Extract<Admitted, { kind: 'new' }>> = [];
  try {
    for (let i = 0; i < first.n; i++) {
      const a = await admit(deps, req, caller, toSegmind(r, i).body, { route: 'v1', id: i === 0 ? req.id : randomUUID() });
      if (a.kind !== 'new') throw new ApiError('internal', 'unexpected replay');
      admitted.push(a);
    }
  } catch (err) {
    // One image refused (406, 429, …): the call is refused whole; what was queued is released.
    for (const a of admitted) {
      await deps.queue.cancel(a.id, 'client_gone');
      a.releaseSlot();
    }
    throw err;
  }
  let outcomes: JobOutcome[];
  try {
    outcomes = await Promise.all(admitted.map((a) => waitForOutcome(deps, req, reply, a.id)));
  } finally {
    for (const a of admitted) a.releaseSlot();
  }
  const ok = outcomes.flatMap((o, i) => (o.status === 'COMPLETED' ? [{ o, id: admitted[i]!.id }] : []));
  if (ok.length === 0) {
    const o = outcomes[0]!;
    if (o.status === 'FAILED') throw o.error;
    throw new ApiError(o.status === 'CANCELLED' && o.reason === 'timeout' ? 'timeout' : 'internal', 'The request was cancelled');
  }
  const last = ok[ok.length - 1]!.o;
  reply.header('x-cost', ok.reduce((n, x) => n + x.o.costMicro, 0) / 1e6);
  reply.header('x-remaining-credits', last.balanceMicro / 1e6);
  const base = baseUrl(deps, req);
  return {
    created: Math.floor(Date.now() / 1000),
    data: ok.map(({ o, id }) =>
      first.responseFormat === 'url'
        ? { url: urlsFor(base, id).output_url, revised_prompt: null }
        : { b64_json: o.output.bytes.toString('base64'), revised_prompt: null },
    ),
    output_format: last.output.format,
    size: `${last.output.width}x${last.output.height}`,
    usage: { seeds: ok.map(({ o }) => o.output.seed) },
  };
}

export function registerOpenAiImageRoutes(app: FastifyInstance, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const rate = rateLimitHook(deps.limiter);

  app.post('/v1/images/generations', { onRequest: [auth, rate] }, async (req, reply) => {
    const body = req.body;
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw bad('body', 'must be a JSON object');
    return generateImages(deps, req, reply, { body: body as Record<string, unknown>, images: [], multipart: false });
  });

  app.post('/v1/images/edits', { onRequest: [auth, rate] }, async (req, reply) => {
    if (!req.isMultipart()) throw new ApiError('unsupported_media_type', 'Content-Type must be multipart/form-data');
    const body: Record<string, unknown> = {};
    const images: string[] = [];
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== 'image' && part.fieldname !== 'image[]') {
          await part.toBuffer();
          throw bad(part.fieldname, 'unexpected file; send images as image or image[]');
        }
        const buf = await part.toBuffer();
        if (images.length >= 4) throw bad('image', 'at most 4 images');
        const mime = /png|jpeg|webp/.exec(part.mimetype)?.[0] ?? sniff(buf);
        images.push(`data:image/${mime};base64,${buf.toString('base64')}`);
      } else {
        body[part.fieldname] = part.value;
      }
    }
    if (images.length === 0) throw bad('image', 'at least one image is required');
    return generateImages(deps, req, reply, { body, images, multipart: true });
  });
}

/** The data: URI needs a type; the decoder sniffs the bytes again regardless. */
function sniff(b: Buffer): string {
  if (b[0] === 0xff && b[1] === 0xd8) return 'jpeg';
  if (b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  return 'png';
}
