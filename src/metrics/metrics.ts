/**
 * Prometheus metrics (served at GET /metrics). One registry per app instance so tests and
 * several apps in one process do not share counters. Waiting and running work are counted
 * separately (llama.cpp server style).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** How much work waits for one model: the source of the queue gauges (each queue reports its models'). */
export interface QueueDepth {
  /** Requests queued, not yet started. */
  waiting: number;
  /** Requests running on an engine. */
  running: number;
  /** Seconds the oldest queued request has waited (0 when none waits). */
  oldestAgeS: number;
}

export const STAGES = ['fetch', 'queue', 'text', 'denoise', 'decode', 'encode', 'total'] as const;

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'route' | 'method' | 'status'>;
  jobsWaiting: Gauge<'model'>;
  jobsRunning: Gauge<'model'>;
  oldestAge: Gauge<'model'>;
  stageSeconds: Histogram<'stage'>;
  engineRestarts: Counter;
  jobsFinished: Counter<'status'>;
  /** Requests sent to an engine together, one observation per batch (1: a job alone). */
  batchSize: Histogram;
  /** The LoRA file cache of this process: hit, download, download_failed, hashed, evicted. */
  loraCacheEvents: Counter<'event'>;
  loraDownloadSeconds: Histogram;
  loraDownloadBytes: Counter;
  /** Where the queue gauges are read from at scrape time, by model slug (set once the queue exists). */
  queueSource: (() => Promise<ReadonlyMap<string, QueueDepth>>) | null;
}

/** Sets a per-model gauge from one read of the queue (nothing when the read failed: the scrape shows no stale value). */
function setByModel(gauge: Gauge<'model'>, depths: ReadonlyMap<string, QueueDepth> | null, pick: (d: QueueDepth) => number): void {
  gauge.reset();
  for (const [model, d] of depths ?? []) gauge.set({ model }, pick(d));
}

/** Counts an engine's restarts into klein_engine_restarts_total, as they happen. */
export function countEngineRestarts(engine: { readonly restarts: number; onStateChange(fn: () => void): void }, metrics: Metrics): void {
  let seen = engine.restarts;
  engine.onStateChange(() => {
    if (engine.restarts > seen) {
      metrics.engineRestarts.inc(engine.restarts - seen);
      seen = engine.restarts;
    }
  });
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  // One read of the queue per scrape, shared by its three gauges.
  let cached: { at: number; value: Promise<ReadonlyMap<string, QueueDepth> | null> } | null = null;
  const depth = (): Promise<ReadonlyMap<string, QueueDepth> | null> => {
    if (!cached || Date.now() - cached.at > 500) {
      cached = { at: Date.now(), value: m.queueSource ? m.queueSource().catch(() => null) : Promise.resolve(null) };
    }
    return cached.value;
  };
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'klein_process_' });
  const m: Metrics = {
    registry,
    httpRequests: new Counter({
      name: 'klein_http_requests_total',
      help: 'HTTP requests by route, method and status code',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    }),
    jobsWaiting: new Gauge({
      name: 'klein_jobs_waiting',
      help: 'Requests queued, not yet started, by model (the queue depth autoscalers scale on)',
      registers: [registry],
      labelNames: ['model'],
      async collect() {
        setByModel(this, await depth(), (d) => d.waiting);
      },
    }),
    jobsRunning: new Gauge({
      name: 'klein_jobs_running',
      help: 'Requests running on an engine, by model',
      registers: [registry],
      labelNames: ['model'],
      async collect() {
        setByModel(this, await depth(), (d) => d.running);
      },
    }),
    oldestAge: new Gauge({
      name: 'klein_queue_oldest_age_seconds',
      help: 'How long the oldest queued request of each model has waited (0 when none waits)',
      registers: [registry],
      labelNames: ['model'],
      async collect() {
        setByModel(this, await depth(), (d) => d.oldestAgeS);
      },
    }),
    stageSeconds: new Histogram({
      name: 'klein_stage_seconds',
      help: 'Time per stage of a generation: fetch (reference images), queue, text, denoise, decode, encode, total',
      labelNames: ['stage'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [registry],
    }),
    engineRestarts: new Counter({
      name: 'klein_engine_restarts_total',
      help: 'Engine processes restarted after a crash or failed start',
      registers: [registry],
    }),
    jobsFinished: new Counter({
      name: 'klein_jobs_finished_total',
      help: 'Jobs that reached a terminal state, by state',
      labelNames: ['status'],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'klein_batch_size',
      help: 'Requests an engine ran as one batch (KLEIN_MAX_BATCH), one observation per batch sent',
      buckets: [1, 2, 3, 4, 6, 8, 12, 16],
      registers: [registry],
    }),
    loraCacheEvents: new Counter({
      name: 'klein_lora_cache_events_total',
      help: "This process's LoRA file cache: hit, download, download_failed, hashed (a KLEIN_LORA_DIR file), evicted",
      labelNames: ['event'],
      registers: [registry],
    }),
    loraDownloadSeconds: new Histogram({
      name: 'klein_lora_download_seconds',
      help: 'How long each LoRA download took (waiting time of the jobs that needed it, not billed)',
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    loraDownloadBytes: new Counter({
      name: 'klein_lora_download_bytes_total',
      help: 'Bytes of LoRA files downloaded',
      registers: [registry],
    }),
    queueSource: null,
  };
  return m;
}
