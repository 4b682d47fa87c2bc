/**
 * A server process, composed from the one validated Config:
 *
 * - embedded default (no REDIS_URL): gateway, SQLite (or DATABASE_URL), the durable local
 *   queue and one engine per served model supervised by this process (embedded.ts);
 * - scaled out (REDIS_URL): a stateless gateway queueing work for fleet workers elsewhere
 *   (role api), or a gateway and this process's own workers (role all) (fleet.ts).
 *
 * Both share the webhook dispatcher, the retention sweeper, metrics and the HTTP app.
 */
import { LinkSigner, linkSecrets } from '../storage/signed-links.js';
import { RequestLinks } from '../storage/request-links.js';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { pino } from 'pino';
import { loadConfig, type Config } from '../config.js';
import { armFaults } from '../faults.js';
import { buildApp } from '../gateway/app.js';
import { createMetrics } from '../metrics/metrics.js';
import { JobBus } from '../queue/events.js';
import { Sweeper } from '../queue/sweeper.js';
import type { JobQueue } from '../queue/types.js';
import type { Database } from '../store/schema.js';
import { Webhooks } from '../webhooks/dispatcher.js';
import type { EngineProcess } from '../worker/engine-process.js';
import { embeddedQueue } from './embedded.js';
import { fleetQueue } from './fleet.js';
import { makeStorage, openStore } from './parts.js';

export type Role = 'all' | 'api' | 'worker';

export interface ServeOptions {
  role?: Role;
  /** GPUs for this process's engines (roles all and worker). */
  gpus?: Array<string | null>;
}

export interface RunningServer {
  url: string;
  /** The first served model's supervised engine in the embedded default (tests read its pid and state). */
  engine: EngineProcess | null;
  /** Every served model's supervised engine by slug (embedded); empty when engines run in workers. */
  engines: ReadonlyMap<string, EngineProcess>;
  close: () => Promise<void>;
}

export interface BuiltServer {
  app: FastifyInstance;
  engine: EngineProcess | null;
  engines: ReadonlyMap<string, EngineProcess>;
  db: Kysely<Database>;
  queue: JobQueue;
  /** Starts the engine(s), the queue and the background loops (the app answers before that, with 503). */
  start: () => Promise<void>;
  close: () => Promise<void>;
}

/** Everything of `serve` but listening: tests drive it with inject(). */
export async function buildServer(config: Config = loadConfig(), env: NodeJS.ProcessEnv = process.env, options: ServeOptions = {}): Promise<BuiltServer> {
  const role = options.role ?? 'all';
  if (role === 'worker') throw new Error('the worker role has no HTTP server: use startWorkers');
  if (role === 'api' && !config.redisUrl) throw new Error('--role api needs REDIS_URL (and DATABASE_URL): the gateway queues work for workers elsewhere');
  armFaults(config.faults);
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } });
  const db = await openStore(config);
  const metrics = createMetrics();
  const storage = makeStorage(config);
  const links = new RequestLinks(new LinkSigner(linkSecrets(config.linkSecrets, config.dataDir)), storage, config);
  if (config.redisUrl && config.linkSecrets.length === 0) {
    // Each gateway would sign with the secret of its own data directory: a link one gives out fails on the others.
    logger.warn({ data_dir: config.dataDir }, 'scaled out without KLEIN_LINK_SECRET: links signed here work only on gateways sharing this data directory; set the same KLEIN_LINK_SECRET on every gateway');
  }
  const webhooks = new Webhooks({
    db,
    logger: logger.child({ component: 'webhooks' }),
    publicUrl: () => config.publicUrl,
    links,
    allowNetworks: config.allowNetworks,
    maxAttempts: config.webhookAttempts,
    backoffMs: config.webhookBackoffMs,
    timeoutMs: config.webhookTimeoutMs,
  });
  const sweeper = new Sweeper({ db, storage, logger: logger.child({ component: 'retention' }), intervalMs: Math.min(60_000, Math.max(1000, config.retentionMs / 10)) });
  const input = { config, env, db, bus: new JobBus(), metrics, storage, logger, onWebhook: () => webhooks.wake() };
  const parts = config.redisUrl ? fleetQueue(input, role === 'all' ? (options.gpus ?? [null]) : null) : embeddedQueue(input);
  // Queue depth and the oldest job's age, read at scrape time (autoscalers read these).
  metrics.queueSource = () => parts.queue.depth();

  let draining = false;
  const app = await buildApp({ config, db, queue: parts.queue, limiter: parts.limiter, metrics, logger, storage, links, draining: () => draining });
  return {
    app,
    engine: parts.engines.get(config.models.first.slug) ?? null,
    engines: parts.engines,
    db,
    queue: parts.queue,
    start: async () => {
      await parts.start();
      webhooks.start();
      sweeper.start();
    },
    close: async () => {
      draining = true;
      webhooks.stop();
      sweeper.stop();
      await app.close();
      await parts.stop();
      await db.destroy();
    },
  };
}

export async function startServer(config: Config = loadConfig(), env: NodeJS.ProcessEnv = process.env, options: ServeOptions = {}): Promise<RunningServer> {
  const built = await buildServer(config, env, options);
  await built.start();
  const address = await built.app.listen({ host: config.host, port: config.port });
  // Links in responses and webhooks use the listening address unless KLEIN_PUBLIC_URL says otherwise.
  if (!config.publicUrl) config.publicUrl = address;
  built.app.log.info({ address, models: config.models.slugs, data_dir: config.dataDir, role: options.role ?? 'all', scaled_out: Boolean(config.redisUrl) }, 'klein-serve listening');
  return { url: address, engine: built.engine, engines: built.engines, close: built.close };
}
