/**
 * The queue of a gateway of the fleet (REDIS_URL): BullMQ on Redis, rows in PostgreSQL, a
 * reconciler for what Redis lost; with `--role all`, this process also runs fleet workers.
 */
import { failFastOptions } from '../redis/connection.js';
import { DistributedQueue } from '../queue/redis/distributed-queue.js';
import { Reconciler } from '../queue/redis/reconciler.js';
import { repairAndLog } from '../queue/repair.js';
import type { FleetWorker } from '../worker/fleet-worker.js';
import { connectRedis, startFleetWorkers } from './parts.js';
import type { QueueParts, QueuePartsInput } from './queue-parts.js';

/** `gpus`: run fleet workers in this process too (role all), one per GPU for each served model; null: a gateway only. */
export function fleetQueue(input: QueuePartsInput, gpus: Array<string | null> | null): QueueParts {
  const { config, env, db, bus, metrics, storage, logger, onWebhook } = input;
  if (!config.redisUrl) throw new Error('a fleet gateway needs REDIS_URL');
  const redis = connectRedis(config, logger.child({ component: 'redis' }));
  const queue = new DistributedQueue({
    db, storage, metrics, bus, onWebhook,
    limiter: redis.limiter,
    logger: logger.child({ component: 'queue' }),
    redis: redis.redis,
    subscriber: redis.subscriber,
    bullConnection: failFastOptions(config.redisUrl),
    keys: redis.keys,
    models: config.models.slugs,
    retentionMs: config.retentionMs,
    maxAttempts: config.maxAttempts,
  });
  const reconciler = new Reconciler({
    db, redis: redis.redis, keys: redis.keys, queueOf: (model) => queue.queues.get(model), lifecycle: queue.ends,
    enqueue: (id, route, model) => queue.enqueue(id, route, model),
    logger: logger.child({ component: 'reconciler' }),
    maxAttempts: config.maxAttempts,
    intervalMs: config.reconcileMs,
    graceMs: Math.max(5000, config.reconcileMs),
  });
  let workers: FleetWorker[] = [];
  return {
    queue,
    limiter: redis.limiter,
    engines: new Map(),
    start: async () => {
      await queue.start();
      // What a crash left open anywhere in the fleet (held charges wait for their hold_until:
      // another gateway may still deliver them).
      await repairAndLog(db, storage, logger.child({ component: 'repair' }), { orphans: true });
      reconciler.start();
      if (gpus) workers = await startFleetWorkers({ config, env, gpus, models: config.models.list, db, storage, metrics, logger, redis });
    },
    stop: async () => {
      reconciler.stop();
      await Promise.all(workers.map((w) => w.drain()));
      await queue.close();
      await redis.close();
    },
  };
}
