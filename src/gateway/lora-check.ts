/**
 * A request's LoRAs at admission (contract §7): each entry's source parsed (URL, hub repo
 * id, or a file of KLEIN_LORA_DIR), its safetensors header read without the body (two
 * Range requests through the SSRF guard, or from disk) and checked against the model's
 * Linear layers when they are known (the engine reports them; loras/check.ts). A file that
 * is not a LoRA for this model is a 400 invalid_lora naming the entry and why, before
 * anything is reserved or queued; the body is downloaded later by the worker's cache.
 */
import type { FastifyRequest } from 'fastify';
import type { ServedModel } from '../contract/models.js';
import type { Cidr } from '../net/networks.js';
import { inspectLora } from '../loras/inspect.js';
import { loraError, parseLoraSource } from '../loras/source.js';
import type { AppDeps } from './app.js';

/**
 * The check of each HTTP request, once: the images of one OpenAI call (n > 1) are admitted one
 * by one with the same `loras`, and their headers are read for the first only.
 */
const checked = new WeakMap<FastifyRequest, Promise<void>>();

export function checkLoras(
  deps: AppDeps,
  req: FastifyRequest,
  loras: ReadonlyArray<{ path: string; weight_name?: string | undefined }>,
  model: ServedModel,
  allow: Cidr[],
  signal: AbortSignal | undefined,
): Promise<void> {
  let check = checked.get(req);
  if (!check) {
    check = checkHeaders(deps, loras, model, allow, signal);
    checked.set(req, check);
  }
  return check;
}

async function checkHeaders(
  deps: AppDeps,
  loras: ReadonlyArray<{ path: string; weight_name?: string | undefined }>,
  model: ServedModel,
  allow: Cidr[],
  signal: AbortSignal | undefined,
): Promise<void> {
  if (loras.length === 0) return;
  const support = deps.queue.loraSupport(model.slug);
  if (support === 'none') throw loraError('loras', `the engine of ${model.slug} takes no LoRA adapters`);
  const dims = support === 'unknown' ? null : support.dims;
  const { config } = deps;
  await Promise.all(
    loras.map(async (entry, i) => {
      const source = parseLoraSource(entry, i, config.loraDir ? { loraDir: config.loraDir } : {});
      const found = await inspectLora(source, {
        allow,
        maxBytes: config.loraMaxBytes,
        timeoutMs: config.loraHeaderTimeoutMs,
        dims,
        hfToken: config.hfToken ?? undefined,
        signal,
      });
      if (found.format === 'lokr') throw loraError(source.field, 'a LoKr adapter (lokr_w1/lokr_w2): this server applies low-rank (LoRA) adapters only');
    }),
  );
}
