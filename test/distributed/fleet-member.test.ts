/**
 * A worker's heartbeat (src/queue/redis/fleet.ts `FleetMember`): leaving is final. No beat
 * writes the worker back after `stop`, and a beat already on its way when `stop` is called
 * cannot land after the removal. Redis is a stand-in whose writes take effect when their
 * reply arrives, each after its own delay, so a slow beat can be in flight across `stop`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { RedisKeys } from '../../src/redis/connection.js';
import { FleetMember, type WorkerInfo } from '../../src/queue/redis/fleet.js';

class SlowRedis {
  readonly keys = new Map<string, string>();
  readonly members = new Set<string>();
  /** Delay of each next write (ms), in order; 0 once used up. */
  constructor(private readonly delays: number[]) {}

  multi() {
    const ops: Array<() => void> = [];
    const chain = {
      set: (k: string, v: string) => (ops.push(() => this.keys.set(k, v)), chain),
      zadd: (_k: string, _score: number, m: string) => (ops.push(() => this.members.add(m)), chain),
      del: (k: string) => (ops.push(() => this.keys.delete(k)), chain),
      zrem: (_k: string, m: string) => (ops.push(() => this.members.delete(m)), chain),
      exec: () =>
        new Promise<[]>((resolve) =>
          setTimeout(() => {
            for (const op of ops) op();
            resolve([]);
          }, this.delays.shift() ?? 0),
        ),
    };
    return chain;
  }
}

const keys = new RedisKeys('klein');
const info = (): Omit<WorkerInfo, 'seen_at'> => ({ id: 'host:1', host: 'host', pid: 1, gpu: null, model: 'm', state: 'READY', reason: null, job: null, jobs_done: 0, started_at: '' });

describe('fleet member: leaving is final', () => {
  it('a beat after stop writes nothing', async () => {
    const redis = new SlowRedis([]);
    const m = new FleetMember(redis as unknown as Redis, keys, info, { intervalMs: 60_000, ttlMs: 10_000 });
    await m.beat();
    assert.ok(redis.keys.has(keys.worker('host:1')) && redis.members.has('host:1'), 'a beat writes the worker');
    await m.stop();
    await m.beat();
    assert.equal(redis.keys.has(keys.worker('host:1')), false);
    assert.equal(redis.members.has('host:1'), false);
  });

  it('a beat still in flight when stop is called cannot write the worker back', async () => {
    // The beat's write takes 100 ms; the removal would take none.
    const redis = new SlowRedis([100]);
    const m = new FleetMember(redis as unknown as Redis, keys, info, { intervalMs: 60_000, ttlMs: 10_000 });
    const beat = m.beat();
    await m.stop();
    await beat;
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(redis.keys.has(keys.worker('host:1')), false, 'no heartbeat left behind');
    assert.equal(redis.members.has('host:1'), false, 'not in the fleet');
  });
});
