/**
 * The parts a server or a worker is assembled from, each built from the one validated
 * Config: the database (SQLite or PostgreSQL, migrated), output storage (local disk or
 * S3), Redis connections, and engines (one per GPU).
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { ServedModel } from '../contract/models.js';
import type { Limiter } from '../limits/limits.js';
import type { Metrics } from '../metrics/metrics.js';
import { RedisLimiter } from '../limits/redis-limiter.js';
import { blockingOptions, connect, failFastOptions, RedisKeys } from '../redis/connection.js';
import { subscribeCancels } from '../queue/redis/events.js';
import { openDatabase } from '../store/db.js';
import { migrateToLatest } from '../store/migrations/index.js';
import type { Database } from '../store/schema.js';
import { LocalDiskStorage } from '../storage/local-disk.js';
import { S3Storage } from '../storage/s3.js';
import type { OutputStorage } from '../storage/types.js';
import { EngineProcess } from '../worker/engine-process.js';
import { FleetWorker } from '../worker/fleet-worker.js';
import { LoraFiles } from '../worker/lora-files.js';

export async function openStore(config: Config): Promise<Kysely<Database>> {
  mkdirSync(config.dataDir, { recursive: true });
  const db = openDatabase({ dataDir: config.dataDir, url: config.databaseUrl });
  await migrateToLatest(db);
  return db;
}

export function makeStorage(config: Config): OutputStorage {
  return config.s3 ? new S3Storage(config.s3) : new LocalDiskStorage(config.dataDir);
}

/**
 * An engine process for one served model. `CUDA_VISIBLE_DEVICES` pins it to its GPU; null
 * leaves the engine's default.
 */
export function makeEngine(config: Config, model: ServedModel, env: NodeJS.ProcessEnv, logger: Logger, gpu: string | null): EngineProcess {
  return new EngineProcess({
    python: config.enginePython,
    env: { ...env, KLEIN_MODEL: model.source, ...(gpu !== null ? { CUDA_VISIBLE_DEVICES: gpu } : {}) },
    logger: logger.child({ component: 'engine', model: model.slug, ...(gpu !== null ? { gpu } : {}) }),
    startTimeoutMs: config.engineStartTimeoutS * 1000,
    variant: model.variant,
  });
}

/** The Redis side of a process of the fleet: command and subscriber connections, keys, limits. */
export interface RedisParts {
  keys: RedisKeys;
  /** Fail-fast commands (request path, heartbeats). */
  redis: Redis;
  /** Subscriber-mode connection (events or cancels). */
  subscriber: Redis;
  limiter: Limiter;
  close(): Promise<void>;
}

export function connectRedis(config: Config, logger: Logger): RedisParts {
  if (!config.redisUrl) throw new Error('REDIS_URL is not set');
  let lastLog = 0;
  // ioredis reports every failed reconnect; one line per 5 s is enough to see an outage.
  const onError = (err: Error) => {
    if (Date.now() - lastLog > 5000) {
      lastLog = Date.now();
      logger.warn({ err: err.message }, 'redis connection error');
    }
  };
  const keys = new RedisKeys(config.redisPrefix);
  const redis = connect(failFastOptions(config.redisUrl), onError);
  const subscriber = connect(blockingOptions(config.redisUrl), onError);
  return {
    keys,
    redis,
    subscriber,
    limiter: new RedisLimiter(redis, keys),
    async close() {
      redis.disconnect();
      subscriber.disconnect();
    },
  };
}

/** One fleet worker per GPU for each of `models`, sharing this process's database, storage and Redis. */
export async function startFleetWorkers(options: {
  config: Config;
  env: NodeJS.ProcessEnv;
  gpus: Array<string | null>;
  models: readonly ServedModel[];
  db: Kysely<Database>;
  storage: OutputStorage;
  metrics: Metrics;
  logger: Logger;
  redis: RedisParts;
  onIdleExit?: () => void;
}): Promise<FleetWorker[]> {
  const { config } = options;
  const several = options.models.length > 1;
  const loras = new LoraFiles(config, options.metrics);
  const workers = options.models.flatMap((model) => options.gpus.map((gpu) => {
    const id = `${hostname()}:${process.pid}${several ? `:${model.slug}` : ''}${gpu !== null ? `:gpu${gpu}` : ''}`;
    return new FleetWorker({
      id,
      gpu,
      model: model.slug,
      engine: makeEngine(config, model, options.env, options.logger, gpu),
      db: options.db,
      storage: options.storage,
      metrics: options.metrics,
      logger: options.logger.child({ component: 'worker', worker_id: id }),
      limiter: options.redis.limiter,
      redis: options.redis.redis,
      bullConnection: blockingOptions(config.redisUrl ?? ''),
      keys: options.redis.keys,
      imageMetadata: config.imageMetadata,
      maxAttempts: config.maxAttempts,
      lockMs: config.jobLockMs,
      idleExitMs: config.idleExitMs,
      onIdleExit: options.onIdleExit,
      loras,
    });
  }));
  await subscribeCancels(options.redis.subscriber, options.redis.keys, (id, reason) => {
    for (const w of workers) w.cancel(id, reason);
  });
  for (const w of workers) w.start();
  return workers;
}
