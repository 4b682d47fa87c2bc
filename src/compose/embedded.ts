/**
 * The queue of the embedded default (no REDIS_URL): rows in the database, taken in order by
 * the engines this process supervises, one per served model (worker/local-queue.ts).
 */
import { hostname } from 'node:os';
import { LocalLimiter } from '../limits/limits.js';
import { countEngineRestarts } from '../metrics/metrics.js';
import { LocalQueue } from '../worker/local-queue.js';
import { LoraFiles } from '../worker/lora-files.js';
import { makeEngine } from './parts.js';
import type { QueueParts, QueuePartsInput } from './queue-parts.js';

export function embeddedQueue({ config, env, db, bus, metrics, storage, logger, onWebhook }: QueuePartsInput): QueueParts {
  const engines = new Map(config.models.list.map((m) => [m.slug, makeEngine(config, m, env, logger, null)] as const));
  const limiter = new LocalLimiter();
  const queue = new LocalQueue({
    db, bus, engines, metrics, limiter, storage, onWebhook,
    logger: logger.child({ component: 'queue' }),
    workerId: `${hostname()}:${process.pid}`,
    imageMetadata: config.imageMetadata,
    maxAttempts: config.maxAttempts,
    retentionMs: config.retentionMs,
    loras: new LoraFiles(config, metrics),
  });
  for (const [slug, engine] of engines) {
    countEngineRestarts(engine, metrics);
    engine.onStateChange(() => queue.wake(slug));
  }
  return {
    queue,
    limiter,
    engines,
    start: async () => {
      for (const engine of engines.values()) engine.start();
      await queue.start();
    },
    stop: async () => {
      queue.stop();
      await Promise.all([...engines.values()].map((e) => e.stop()));
      await queue.idle();
    },
  };
}
