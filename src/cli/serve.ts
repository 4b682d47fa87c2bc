/**
 * `klein serve`: the embedded default in one process tree — gateway, SQLite, the durable
 * local queue and one engine supervised by this process. SIGTERM/SIGINT drain: new work
 * gets 503, open responses finish, running jobs are cancelled after the grace period.
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Command } from 'commander';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import { pino } from 'pino';
import { loadConfig, type Config } from '../config.js';
import { buildApp } from '../gateway/app.js';
import { LocalLimiter } from '../gateway/limits.js';
import { createMetrics } from '../gateway/metrics.js';
import { parsePricing } from '../contract/pricing.js';
import { JobBus } from '../queue/events.js';
import { LocalQueue } from '../queue/local-queue.js';
import { openDatabase } from '../store/db.js';
import { migrateToLatest } from '../store/migrations/index.js';
import { EngineProcess } from '../worker/engine-process.js';
import { LocalDiskStorage } from '../storage/local-disk.js';
import { S3Storage } from '../storage/s3.js';
import { Webhooks } from '../webhooks/dispatcher.js';
import { Sweeper } from '../queue/sweeper.js';

export interface RunningServer {
  url: string;
  /** The supervised engine (tests read its pid and state). */
  engine: EngineProcess;
  close: () => Promise<void>;
}

export interface BuiltServer {
  app: FastifyInstance;
  engine: EngineProcess;
  db: Kysely<Database>;
  /** Starts the engine and the queue (the app answers before that, with 503). */
  start: () => Promise<void>;
  close: () => Promise<void>;
}

/** Everything of `serve` but listening: tests drive it with inject(). */
export async function buildServer(config: Config = loadConfig(), env: NodeJS.ProcessEnv = process.env): Promise<BuiltServer> {
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } });
  const pricing = parsePricing(env);
  mkdirSync(config.dataDir, { recursive: true });
  const db = openDatabase({ dataDir: config.dataDir });
  await migrateToLatest(db);

  const metrics = createMetrics();
  const bus = new JobBus();
  const engine = new EngineProcess({
    python: config.enginePython,
    env: { ...env, KLEIN_MODEL: config.model },
    logger: logger.child({ component: 'engine' }),
  });
  const storage = config.s3 ? new S3Storage(config.s3) : new LocalDiskStorage(config.dataDir);
  const webhooks = new Webhooks({
    db,
    logger: logger.child({ component: 'webhooks' }),
    publicUrl: () => config.publicUrl,
    allowNetworks: config.allowNetworks,
    maxAttempts: config.webhookAttempts,
    backoffMs: config.webhookBackoffMs,
    timeoutMs: config.webhookTimeoutMs,
  });
  const sweeper = new Sweeper({ db, storage, logger: logger.child({ component: 'retention' }), intervalMs: Math.min(60_000, Math.max(1000, config.retentionMs / 10)) });
  const queue = new LocalQueue({
    db,
    bus,
    engine,
    metrics,
    logger: logger.child({ component: 'queue' }),
    workerId: `${hostname()}:${process.pid}`,
    imageMetadata: config.imageMetadata,
    maxAttempts: config.maxAttempts,
    retentionMs: config.retentionMs,
    storage,
    webhooks,
  });
  let draining = false;
  const app = await buildApp({
    config,
    db,
    queue,
    bus,
    engine,
    limiter: new LocalLimiter(),
    metrics,
    logger,
    pricing,
    storage,
    draining: () => draining,
  });

  let restartsSeen = 0;
  engine.onStateChange(() => {
    if (engine.restarts > restartsSeen) {
      metrics.engineRestarts.inc(engine.restarts - restartsSeen);
      restartsSeen = engine.restarts;
    }
    queue.wake();
  });
  return {
    app,
    engine,
    db,
    start: async () => {
      engine.start();
      await queue.start();
      webhooks.start();
      sweeper.start();
    },
    close: async () => {
      draining = true;
      queue.stop();
      webhooks.stop();
      sweeper.stop();
      await app.close();
      await engine.stop();
      await queue.idle();
      await db.destroy();
    },
  };
}

export async function startServer(config: Config = loadConfig(), env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const built = await buildServer(config, env);
  await built.start();
  const address = await built.app.listen({ host: config.host, port: config.port });
  // Links in responses and webhooks use the listening address unless KLEIN_PUBLIC_URL says otherwise.
  if (!config.publicUrl) config.publicUrl = address;
  built.app.log.info({ address, model: config.model, data_dir: config.dataDir }, 'klein-serve listening');
  return { url: address, engine: built.engine, close: built.close };
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the API server with one engine (configured by environment variables; see README)')
    .action(async () => {
      const server = await startServer();
      let closing = false;
      const shutdown = (signal: string) => {
        if (closing) return;
        closing = true;
        console.error(`klein: ${signal}, draining`);
        server.close().then(
          () => process.exit(0),
          (err) => {
            console.error(err);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    });
}
