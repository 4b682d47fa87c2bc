/**
 * The fleet of workers, as Redis knows it. Each worker (one per GPU) writes a heartbeat —
 * its state, its job, its engine's facts — every `intervalMs` into a key that expires after
 * `ttlMs`, and keeps its id in a sorted set scored by last sight. A gateway reads both:
 * an id whose heartbeat expired is a lost worker (crashed, killed, or cut off); ids not
 * seen for an hour are forgotten.
 */
import type { HealthStatus } from '../../contract/health-schema.js';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../../redis/connection.js';

/** A fleet worker's state: the health states of the whole server. */
export type WorkerState = HealthStatus;

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  /** The GPU this worker's engine is pinned to, or null when not pinned. */
  gpu: string | null;
  model: string;
  state: WorkerState;
  reason: string | null;
  /** The request it runs now. */
  job: string | null;
  jobs_done: number;
  started_at: string;
  seen_at: string;
  /**
   * Its engine's LoRA capabilities once ready (the Linear dims a LoRA must fit); null: the
   * engine takes none; absent: not ready yet.
   */
  loras?: { max: number; dims?: { inputs: number[]; outputs: number[] } } | null;
}

export interface FleetView {
  ready: number;
  busy: number;
  starting: number;
  unhealthy: number;
  draining: number;
  lost: number;
  workers: WorkerInfo[];
  lost_ids: string[];
}

const FORGET_AFTER_MS = 3_600_000;

/**
 * A worker's heartbeat. Leaving is final: once `stop` has removed the worker, no beat
 * writes it back (an engine's last state change, or the idle timer, may still call
 * `beat`), since a heartbeat written after leaving expires into a `lost` worker that the
 * fleet view keeps for an hour — every scale-in would look like a crash.
 */
export class FleetMember {
  private timer: NodeJS.Timeout | null = null;
  private left = false;
  /** Heartbeat writes not yet answered; `stop` waits for them before it removes the worker. */
  private readonly writing = new Set<Promise<unknown>>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly info: () => Omit<WorkerInfo, 'seen_at'>,
    private readonly options: { intervalMs: number; ttlMs: number },
  ) {}

  start(): void {
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.options.intervalMs);
    this.timer.unref();
  }

  /**
   * Writes the heartbeat now (also on every state change, so the gateway sees it at once).
   * A no-op once the worker has left.
   */
  async beat(): Promise<void> {
    if (this.left) return;
    const i = { ...this.info(), seen_at: new Date().toISOString() };
    const write = this.redis
      .multi()
      .set(this.keys.worker(i.id), JSON.stringify(i), 'PX', this.options.ttlMs)
      .zadd(this.keys.workers, Date.now(), i.id)
      .exec()
      .catch(() => undefined);
    this.writing.add(write);
    try {
      await write;
    } finally {
      this.writing.delete(write);
    }
  }

  /**
   * Leaves the fleet (a clean exit is not a lost worker): no beat from now on, and the
   * removal is written after any beat already sent, so none can land after it.
   */
  async stop(): Promise<void> {
    this.left = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.writing);
    const id = this.info().id;
    await this.redis.multi().del(this.keys.worker(id)).zrem(this.keys.workers, id).exec().catch(() => undefined);
  }
}

export async function readFleet(redis: Redis, keys: RedisKeys, now = Date.now()): Promise<FleetView> {
  await redis.zremrangebyscore(keys.workers, '-inf', now - FORGET_AFTER_MS);
  const ids = await redis.zrange(keys.workers, 0, -1);
  const raw = ids.length > 0 ? await redis.mget(ids.map((id) => keys.worker(id))) : [];
  const view: FleetView = { ready: 0, busy: 0, starting: 0, unhealthy: 0, draining: 0, lost: 0, workers: [], lost_ids: [] };
  ids.forEach((id, i) => {
    const r = raw[i];
    if (!r) {
      view.lost += 1;
      view.lost_ids.push(id);
      return;
    }
    const w = JSON.parse(r) as WorkerInfo;
    view.workers.push(w);
    const k = w.state.toLowerCase() as 'ready' | 'busy' | 'starting' | 'unhealthy' | 'draining';
    view[k] += 1;
  });
  return view;
}

/** Ids of the workers whose heartbeat is alive now. */
export async function aliveWorkers(redis: Redis, keys: RedisKeys): Promise<Set<string>> {
  return new Set((await readFleet(redis, keys)).workers.map((w) => w.id));
}
