/**
 * Only a delivered answer is charged (contract §1, §8). A synchronous request without an
 * Idempotency-Key is queued with its charge held (queue/delivery.ts); the route that answers
 * it arms this just before sending:
 *
 *   client already gone      → every charge of the answer released, 499 (nobody hears it)
 *   answer written out whole → every charge settled in one transaction ('finish')
 *   connection lost mid-way  → every charge released ('close' before 'finish')
 *
 * Settling after the write means a crash between the two leaves the charge held, and the
 * repair sweep releases it: a failure costs the operator an image, never the client one.
 */
import type { FastifyReply } from 'fastify';
import { fault } from '../faults.js';
import { releaseUndelivered, settleDelivered } from '../queue/delivery.js';
import type { AppDeps } from './app.js';

export async function chargeOnDelivery(deps: AppDeps, reply: FastifyReply, ids: string[], gone: AbortSignal | undefined): Promise<void> {
  const log = reply.log;
  const release = (why: string) =>
    releaseUndelivered(deps.db, deps.storage, ids, why).catch((err: unknown) => {
      log.error({ err, request_ids: ids }, 'could not release undelivered answers (the repair sweep will)');
      return [];
    });
  if (gone?.aborted) {
    await release('the client left before its answer; not charged');
    throw gone.reason;
  }
  const res = reply.raw;
  res.once('finish', () => {
    fault('deliver.after_write');
    settleDelivered(deps.db, ids).then(
      (ok) => {
        if (!ok) log.error({ request_ids: ids }, 'an answer was delivered but its charge had already been released');
      },
      (err: unknown) => log.error({ err, request_ids: ids }, 'could not settle a delivered answer (the repair sweep releases it)'),
    );
  });
  res.once('close', () => {
    if (!res.writableFinished) void release('the connection closed before the answer was delivered; not charged');
  });
}
