/**
 * The queue of the embedded default (no REDIS_URL): rows in the database, taken in order by
 * one engine this process supervises (worker/local-queue.ts).
 */
import { hostname } from 'node:os';
import { LocalLimiter } from '../limits/limits.js';
import { countEngineRestarts } from '../metrics/metrics.js';
import { LocalQueue } from '../worker/local-queue.js';
import { makeEngine } from './parts.js';
import type { QueueParts, QueuePartsInput } from './queue-parts.js';

export function embeddedQueue({ config, env, db, bus, metrics, storage, logger, onWebhook }: QueuePartsInput): QueueParts {
  const engine = makeEngine(config, env, logger, null);
  const limiter = new LocalLimiter();
  const queue = new LocalQueue({
    db, bus, engine, metrics, limiter, storage, onWebhook,
    logger: logger.child({ component: 'queue' }),
    workerId: `${hostname()}:${process.pid}`,
    imageMetadata: config.imageMetadata,
    maxAttempts: config.maxAttempts,
    retentionMs: config.retentionMs,
  });
  countEngineRestarts(engine, metrics);
  engine.onStateChange(() => queue.wake());
  return {
    queue,
    limiter,
    engine,
    start: async () => {
      engine.start();
      await queue.start();
    },
    stop: async () => {
      queue.stop();
      await engine.stop();
      await queue.idle();
    },
  };
}
