/**
 * Which queued requests may run as one batch on an engine, and picking them (the embedded
 * queue and the fleet worker both do: worker/local-queue.ts, worker/fleet-worker.ts).
 *
 * The rule is the engine's own (engine/klein_engine/batch.py, `shape_key` and `batch_key`):
 * requests share one batched forward per step when everything that shapes the forward and
 * the schedule is equal — width, height, steps, sampler, CFG on or off (cfg > 1; the scale
 * itself may differ), the reference images' sizes — and go_fast is on: a `go_fast: false`
 * request must give the bytes it gives alone, and a batch changes the last bits of each
 * image, so it never shares one. Prompts, seeds, cfg scales, formats and references' pixels
 * may differ. One engine serves one model (each queue takes only its model's rows); LoRA
 * adapters (contract §7) are applied per batch, so requests share one only with the same
 * adapters at the same scales, in the same order.
 *
 * The engine checks the rule again and splits a batch that breaks it, so a mismatch here
 * costs speed, never correctness.
 */
import type { ResolvedParams } from '../contract/types.js';
import type { RequestRow } from '../store/requests.js';
import { paramsOfRow, type JobInputs } from './job-inputs.js';

/** How many queued rows, from the oldest, a batch is picked from. */
export const pickWindow = (maxBatch: number): number => Math.max(32, 8 * maxBatch);

/**
 * The key two requests must share to run as one batch; null when the request runs alone.
 * Without `references` (the sizes of its reference images, in order) the key leaves them
 * out: equal keys then say only that the request may be compatible (see pickBatch).
 */
export function batchKey(params: ResolvedParams, references?: ReadonlyArray<{ width: number; height: number }>): string | null {
  if (!params.go_fast) return null;
  const refs = references ? references.map((r) => `${r.width}x${r.height}`) : [`${params.image_urls.length} references`];
  const loras = (params.loras ?? []).map((l) => [l.path, l.weight_name ?? null, l.scale]);
  return JSON.stringify([params.width, params.height, params.steps, params.sampler, params.cfg > 1, refs, loras]);
}

export interface Candidate {
  row: RequestRow;
  /** Its inputs; null when they are lost (it then runs alone, and fails). */
  inputs: JobInputs | null;
}

/**
 * The batch to run next: `head` (the oldest queued request, or the job the queue handed
 * over) and, in queue order, up to maxBatch − 1 of `rows` (later queued requests) with its
 * key. Rows are first matched on their parameters; only those that match have their inputs
 * read (`inputsOf`), since the reference sizes come from the pixels. Nothing is claimed.
 */
export async function pickBatch(
  head: Candidate,
  rows: readonly RequestRow[],
  maxBatch: number,
  inputsOf: (row: RequestRow) => Promise<JobInputs | null>,
): Promise<Candidate[]> {
  const batch = [head];
  if (maxBatch <= 1 || !head.inputs) return batch;
  const key = batchKey(head.inputs.params, head.inputs.images);
  const roughKey = batchKey(head.inputs.params);
  if (key === null) return batch;
  for (const row of rows) {
    if (batch.length >= maxBatch) break;
    if (row.id === head.row.id) continue;
    if (batchKey(paramsOfRow(row)) !== roughKey) continue;
    const inputs = await inputsOf(row);
    if (inputs && batchKey(inputs.params, inputs.images) === key) batch.push({ row, inputs });
  }
  return batch;
}
