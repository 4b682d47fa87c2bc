/** What a server's queue is built from, and what building it gives (embedded.ts, fleet.ts). */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Limiter } from '../limits/limits.js';
import type { Metrics } from '../metrics/metrics.js';
import type { JobBus } from '../queue/events.js';
import type { JobQueue } from '../queue/types.js';
import type { OutputStorage } from '../storage/types.js';
import type { Database } from '../store/schema.js';
import type { EngineProcess } from '../worker/engine-process.js';

export interface QueuePartsInput {
  config: Config;
  env: NodeJS.ProcessEnv;
  db: Kysely<Database>;
  bus: JobBus;
  metrics: Metrics;
  storage: OutputStorage;
  logger: Logger;
  /** Wakes the webhook dispatcher when an end recorded a delivery. */
  onWebhook: () => void;
}

export interface QueueParts {
  queue: JobQueue;
  limiter: Limiter;
  /** The supervised engines of the embedded default, by model slug; empty when engines run in workers. */
  engines: ReadonlyMap<string, EngineProcess>;
  /** Starts taking work (the HTTP app answers before, with 503). */
  start: () => Promise<void>;
  /** Stops taking work and waits for what runs here. */
  stop: () => Promise<void>;
}
