/**
 * A fleet worker process (`klein worker --model <slug>`, `klein serve --role worker`):
 * engines of one served model taking its jobs from Redis, one per GPU, no API; optionally
 * its own monitor (worker-monitor.ts).
 */
import { pino } from 'pino';
import type { Config } from '../config.js';
import { armFaults } from '../faults.js';
import { createMetrics } from '../metrics/metrics.js';
import { queueDepths } from '../queue/depth.js';
import type { ServedModel } from '../contract/models.js';
import type { FleetWorker } from '../worker/fleet-worker.js';
import { connectRedis, makeStorage, openStore, startFleetWorkers } from './parts.js';
import { buildWorkerMonitor } from './worker-monitor.js';

export interface RunningWorkers {
  workers: FleetWorker[];
  /** Drains: each worker finishes its job and takes no other; `force` cancels running jobs. */
  close: (force?: boolean) => Promise<void>;
}

/**
 * The model a worker serves: `--model <slug>`, one of KLEIN_MODELS; may be left out when
 * only one model is served.
 */
export function workerModel(config: Config, slug: string | undefined): ServedModel {
  if (slug === undefined) {
    if (config.models.list.length === 1) return config.models.first;
    throw new Error(`--model is required when several models are served: one of ${config.models.slugs.join(', ')}`);
  }
  const model = config.models.get(slug);
  if (!model) throw new Error(`--model must be one of KLEIN_MODELS's slugs (${config.models.slugs.join(', ')}), got "${slug}"`);
  return model;
}

export async function startWorkers(config: Config, env: NodeJS.ProcessEnv, gpus: Array<string | null>, model: ServedModel, onIdleExit?: () => void): Promise<RunningWorkers> {
  if (!config.redisUrl) throw new Error('a worker needs REDIS_URL (and DATABASE_URL, and S3_BUCKET or a data directory shared with the gateways)');
  armFaults(config.faults);
  const logger = pino({ level: config.logLevel, base: { pid: process.pid, role: 'worker' } });
  const db = await openStore(config);
  const redis = connectRedis(config, logger.child({ component: 'redis' }));
  const metrics = createMetrics();
  metrics.queueSource = () => queueDepths(db, [model.slug]);
  const workers = await startFleetWorkers({ config, env, gpus, models: [model], db, storage: makeStorage(config), metrics, logger, redis, onIdleExit });
  const monitor = config.workerMetricsPort > 0 ? buildWorkerMonitor(metrics, () => workers) : null;
  await monitor?.listen({ host: config.host, port: config.workerMetricsPort });
  logger.info({ workers: workers.map((w) => w.id), model: model.slug, source: model.source, metrics_port: config.workerMetricsPort || null }, 'klein worker started');
  return {
    workers,
    close: async (force = false) => {
      await Promise.all(workers.map((w) => w.drain(force)));
      await monitor?.close();
      await redis.close();
      await db.destroy();
    },
  };
}
