/**
 * `klein serve [--role all|api|worker] [--gpus 0,1]`.
 *
 * - Embedded default (no REDIS_URL): one process tree — gateway, SQLite (or DATABASE_URL),
 *   the durable local queue and one engine supervised by this process.
 * - Scaled out (REDIS_URL): `--role api` is a stateless gateway (any number of replicas
 *   behind a load balancer); `--role worker` runs one engine per listed GPU taking jobs from
 *   Redis (the same as `klein worker`); `--role all` is both in one process.
 *
 * SIGTERM/SIGINT drain: a gateway answers new work with 503 and finishes its open
 * responses; a worker finishes its job and takes no other. A second signal stops at once.
 */
import { hostname } from 'node:os';
import type { Command } from 'commander';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { pino, type Logger } from 'pino';
import { loadConfig, type Config } from '../config.js';
import { buildApp } from '../gateway/app.js';
import { createServer, type Server } from 'node:http';
import { countEngineRestarts, createMetrics, type Metrics } from '../metrics/metrics.js';
import { LocalLimiter, type Limiter } from '../limits/limits.js';
import { parsePricing } from '../billing/pricing.js';
import { JobBus } from '../queue/events.js';
import { queueDepth } from '../queue/depth.js';
import { LocalQueue } from '../worker/local-queue.js';
import { failFastOptions } from '../redis/connection.js';
import { DistributedQueue } from '../queue/redis/distributed-queue.js';
import { Reconciler } from '../queue/redis/reconciler.js';
import type { JobQueue } from '../queue/types.js';
import type { Database } from '../store/schema.js';
import type { EngineProcess } from '../worker/engine-process.js';
import type { FleetWorker } from '../worker/fleet-worker.js';
import { Webhooks } from '../webhooks/dispatcher.js';
import { Sweeper } from '../queue/sweeper.js';
import { repairAndLog } from '../queue/repair.js';
import { armFaults } from '../faults.js';
import { connectRedis, makeEngine, makeStorage, openStore, parseGpus, startFleetWorkers } from './components.js';

export type Role = 'all' | 'api' | 'worker';

export interface ServeOptions {
  role?: Role;
  /** GPUs for this process's engines (roles all and worker). */
  gpus?: Array<string | null>;
}

export interface RunningServer {
  url: string;
  /** The supervised engine of the embedded default (tests read its pid and state). */
  engine: EngineProcess | null;
  close: () => Promise<void>;
}

export interface BuiltServer {
  app: FastifyInstance;
  engine: EngineProcess | null;
  db: Kysely<Database>;
  queue: JobQueue;
  /** Starts the engine(s), the queue and the background loops (the app answers before that, with 503). */
  start: () => Promise<void>;
  close: () => Promise<void>;
}

/** Everything of `serve` but listening: tests drive it with inject(). */
export async function buildServer(config: Config = loadConfig(), env: NodeJS.ProcessEnv = process.env, opts: ServeOptions = {}): Promise<BuiltServer> {
  const role = opts.role ?? 'all';
  if (role === 'worker') throw new Error('the worker role has no HTTP server: use startWorkers');
  if (role === 'api' && !config.redisUrl) throw new Error('--role api needs REDIS_URL (and DATABASE_URL): the gateway queues work for workers elsewhere');
  armFaults(config.faults);
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } });
  const pricing = parsePricing(env);
  const db = await openStore(config);
  const metrics = createMetrics();
  const bus = new JobBus();
  const storage = makeStorage(config);
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
  const wakeWebhooks = () => webhooks.wake();

  let queue: JobQueue;
  let engine: EngineProcess | null = null;
  let startQueue: () => Promise<void>;
  let stopQueue: () => Promise<void>;
  let limiter: Limiter;
  if (!config.redisUrl) {
    // The embedded default: one engine in this process tree.
    engine = makeEngine(config, env, logger, null);
    limiter = new LocalLimiter();
    const local = new LocalQueue({
      db, bus, engine, metrics, limiter, storage,
      logger: logger.child({ component: 'queue' }),
      workerId: `${hostname()}:${process.pid}`,
      imageMetadata: config.imageMetadata,
      maxAttempts: config.maxAttempts,
      retentionMs: config.retentionMs,
      onWebhook: wakeWebhooks,
    });
    const eng = engine;
    countEngineRestarts(eng, metrics);
    eng.onStateChange(() => local.wake());
    queue = local;
    startQueue = async () => {
      eng.start();
      await local.start();
    };
    stopQueue = async () => {
      local.stop();
      await eng.stop();
      await local.idle();
    };
  } else {
    const redis = connectRedis(config, logger.child({ component: 'redis' }));
    limiter = redis.limiter;
    const dq = new DistributedQueue({
      db, storage, metrics, bus, limiter,
      logger: logger.child({ component: 'queue' }),
      redis: redis.redis,
      subscriber: redis.subscriber,
      bullConnection: failFastOptions(config.redisUrl),
      keys: redis.keys,
      retentionMs: config.retentionMs,
      maxAttempts: config.maxAttempts,
      onWebhook: wakeWebhooks,
    });
    const reconciler = new Reconciler({
      db, redis: redis.redis, keys: redis.keys, queue: dq.queue, lifecycle: dq.ends,
      enqueue: (id, route) => dq.enqueue(id, route),
      logger: logger.child({ component: 'reconciler' }),
      maxAttempts: config.maxAttempts,
      intervalMs: config.reconcileMs,
      graceMs: Math.max(5000, config.reconcileMs),
    });
    let workers: FleetWorker[] = [];
    queue = dq;
    startQueue = async () => {
      await dq.start();
      // What a crash left open anywhere in the fleet (held charges wait for their hold_until:
      // another gateway may still deliver them).
      await repairAndLog(db, storage, logger.child({ component: 'repair' }), { orphans: true });
      reconciler.start();
      if (role === 'all') {
        workers = await startFleetWorkers({ config, env, gpus: opts.gpus ?? [null], db, storage, metrics, logger, redis });
      }
    };
    stopQueue = async () => {
      reconciler.stop();
      await Promise.all(workers.map((w) => w.drain()));
      await dq.close();
      await redis.close();
    };
  }
  // Queue depth and the oldest job's age, read at scrape time (autoscalers read these).
  metrics.queueSource = () => queue.depth();

  let draining = false;
  const app = await buildApp({ config, db, queue, limiter, metrics, logger, pricing, storage, draining: () => draining });
  return {
    app,
    engine,
    db,
    queue,
    start: async () => {
      await startQueue();
      webhooks.start();
      sweeper.start();
    },
    close: async () => {
      draining = true;
      webhooks.stop();
      sweeper.stop();
      await app.close();
      await stopQueue();
      await db.destroy();
    },
  };
}

export async function startServer(config: Config = loadConfig(), env: NodeJS.ProcessEnv = process.env, opts: ServeOptions = {}): Promise<RunningServer> {
  const built = await buildServer(config, env, opts);
  await built.start();
  const address = await built.app.listen({ host: config.host, port: config.port });
  // Links in responses and webhooks use the listening address unless KLEIN_PUBLIC_URL says otherwise.
  if (!config.publicUrl) config.publicUrl = address;
  built.app.log.info({ address, model: config.model, data_dir: config.dataDir, role: opts.role ?? 'all', scaled_out: Boolean(config.redisUrl) }, 'klein-serve listening');
  return { url: address, engine: built.engine, close: built.close };
}

export interface RunningWorkers {
  workers: FleetWorker[];
  /** Drains: each worker finishes its job and takes no other; `force` cancels running jobs. */
  close: (force?: boolean) => Promise<void>;
}

/** `klein worker`: engines taking jobs from Redis, no HTTP server. */
export async function startWorkers(config: Config, env: NodeJS.ProcessEnv, gpus: Array<string | null>, onIdleExit?: () => void): Promise<RunningWorkers> {
  if (!config.redisUrl) throw new Error('a worker needs REDIS_URL (and DATABASE_URL, and S3_BUCKET or a data directory shared with the gateways)');
  armFaults(config.faults);
  const logger: Logger = pino({ level: config.logLevel, base: { pid: process.pid, role: 'worker' } });
  const db = await openStore(config);
  const redis = connectRedis(config, logger.child({ component: 'redis' }));
  const metrics = createMetrics();
  metrics.queueSource = () => queueDepth(db);
  const workers = await startFleetWorkers({ config, env, gpus, db, storage: makeStorage(config), metrics, logger, redis, onIdleExit });
  const monitor = config.workerMetricsPort > 0 ? await serveWorkerMonitor(config.host, config.workerMetricsPort, metrics, workers) : null;
  logger.info({ workers: workers.map((w) => w.id), model: config.model, metrics_port: config.workerMetricsPort || null }, 'klein worker started');
  return {
    workers,
    close: async (force = false) => {
      await Promise.all(workers.map((w) => w.drain(force)));
      await new Promise((r) => (monitor ? monitor.close(r) : r(undefined)));
      await redis.close();
      await db.destroy();
    },
  };
}

/**
 * A worker's own /metrics (stage timings, jobs finished, engine restarts: what only the
 * worker sees) and /health (its workers' states), for Prometheus and probes.
 */
async function serveWorkerMonitor(host: string, port: number, metrics: Metrics, workers: FleetWorker[]): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      void metrics.registry.metrics().then((body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body));
    } else if (req.method === 'GET' && path === '/health') {
      const list = workers.map((w) => ({ id: w.id, state: w.state }));
      const ok = list.some((w) => w.state === 'READY' || w.state === 'BUSY');
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: ok ? 'READY' : 'NOT_READY', workers: list }));
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
    }
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  return server;
}

/** SIGTERM/SIGINT: drain once; a second signal exits at once. */
function onSignals(drain: (force: boolean) => Promise<void>): void {
  let signals = 0;
  const handle = (signal: string) => {
    signals += 1;
    if (signals > 1) {
      console.error(`klein: ${signal} again, stopping now`);
      process.exit(1);
    }
    console.error(`klein: ${signal}, draining`);
    drain(false).then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handle('SIGTERM'));
  process.on('SIGINT', () => handle('SIGINT'));
}

async function runWorkers(gpus: string | undefined): Promise<void> {
  let running: RunningWorkers | null = null;
  const exitIdle = () => {
    void running?.close().then(() => process.exit(0));
  };
  running = await startWorkers(loadConfig(), process.env, parseGpus(gpus), exitIdle);
  const r = running;
  onSignals((force) => r.close(force));
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the API server (configured by environment variables; see README)')
    .option('--role <role>', 'all (gateway and engine), api (gateway only, needs REDIS_URL) or worker (engines only)', 'all')
    .option('--gpus <list>', 'GPU indices for this process\'s engines, e.g. 0,1 (roles all and worker)')
    .action(async (options: { role: string; gpus?: string }) => {
      if (!['all', 'api', 'worker'].includes(options.role)) throw new Error(`--role must be all, api or worker, got "${options.role}"`);
      if (options.role === 'worker') return runWorkers(options.gpus);
      const server = await startServer(loadConfig(), process.env, { role: options.role as Role, gpus: parseGpus(options.gpus) });
      onSignals(() => server.close());
    });
  program
    .command('worker')
    .description('run engines that take jobs from Redis, one per GPU (REDIS_URL, DATABASE_URL; KLEIN_IDLE_EXIT to leave when idle)')
    .option('--gpus <list>', 'GPU indices, e.g. 0,1 (default: one engine on the default device)')
    .action(async (options: { gpus?: string }) => runWorkers(options.gpus));
}
