/**
 * A dead worker's job, with the default settings (the real KLEIN_JOB_LOCK_MS and
 * KLEIN_RECONCILE_MS, not the short ones the other fleet tests use): a SIGKILLed worker's
 * job is started again on another worker within 15 s of the kill, its synchronous caller
 * still gets the image, and while no worker is free to take it, the job counts as waiting
 * (klein_jobs_waiting), not as running for nobody (klein_jobs_running).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { generateOn, startStack, type Proc, type Stack } from './stack.js';
import { RedisKeys } from '../../src/redis/connection.js';
import { queueName } from '../../src/queue/redis/bull-job.js';
import { DEFAULT_MODEL_SLUG } from '../../src/contract/models.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The bound the fleet promises: a dead worker's job runs again within this of the kill. */
const TAKEOVER_MS = 15_000;
/** KLEIN_JOB_LOCK_MS's default (config.ts). */
const DEFAULT_LOCK_MS = 10_000;

/** Worker ids are `<host>:<pid>` (cli/components.ts). */
const procOf = (s: Stack, workerId: string): Proc | undefined => s.workers.find((p) => workerId.split(':')[1] === String(p.child.pid));

async function row(s: Stack, id: string) {
  return s.db.selectFrom('requests').select(['status', 'worker_id', 'attempts', 'started_at']).where('id', '=', id).executeTakeFirst();
}

/** Waits until request `id` runs (PROCESSING with a worker) and returns that worker. */
async function runningOn(s: Stack, id: string, timeoutMs = 60_000): Promise<{ workerId: string; proc: Proc }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await row(s, id);
    if (r?.status === 'PROCESSING' && r.worker_id) {
      const proc = procOf(s, r.worker_id);
      assert.ok(proc, `worker ${r.worker_id} is one of the stack's`);
      return { workerId: r.worker_id, proc };
    }
    if (Date.now() > deadline) throw new Error(`${id} is ${r?.status}, not running`);
    await sleep(20);
  }
}

async function depth(url: string): Promise<{ waiting: number; running: number }> {
  const m = await (await fetch(`${url}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^${name}\\{model="flux-2-klein-4b"\\} (\\S+)$`, 'm').exec(m)?.[1]);
  return { waiting: read('klein_jobs_waiting'), running: read('klein_jobs_running') };
}

async function submit(url: string, key: string, body: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { request_id: string }).request_id;
}

describe('fleet with default settings: a SIGKILLed worker\'s job', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ model: 'simulated:20', env: { KLEIN_ENGINE_FAULTS: '1', KLEIN_JOB_LOCK_MS: null, KLEIN_RECONCILE_MS: null } });
    await s.startGateway();
    await s.startWorker();
    await s.startWorker();
    await s.waitWorkers(2);
  });
  after(async () => s?.stop());

  it(`is started again on another worker within ${TAKEOVER_MS / 1000} s of the kill, and its synchronous caller gets the image`, async (t) => {
    const key = await s.key();
    const url = s.gateways[0]!.url;
    // About 6 s of engine time per run (20 steps of 300 ms), so the kill lands mid-run.
    const call = generateOn(url, key, { prompt: 'survives its worker [[fault:sleep:300]]', width: 64, height: 64, steps: 20, cfg: 1 });
    void call.catch(() => undefined);
    // The stack's only request so far.
    let id = '';
    for (const deadline = Date.now() + 60_000; !id; await sleep(20)) {
      id = (await s.db.selectFrom('requests').select('id').executeTakeFirst())?.id ?? '';
      assert.ok(Date.now() < deadline, 'the call made a request');
    }
    const first = await runningOn(s, id);
    // The worst case: killed just after its BullMQ lock was set or renewed, so the lock
    // outlives the worker by (almost) all of KLEIN_JOB_LOCK_MS.
    const redis = new Redis(s.redis.url);
    const lockKey = `${new RedisKeys('klein').bull}:${queueName(DEFAULT_MODEL_SLUG)}:${id}:lock`;
    let lockLeft = 0;
    try {
      for (const deadline = Date.now() + 30_000; lockLeft < DEFAULT_LOCK_MS - 300; await sleep(10)) {
        lockLeft = await redis.pttl(lockKey);
        assert.ok(lockLeft <= DEFAULT_LOCK_MS, `the lock is the default ${DEFAULT_LOCK_MS} ms (${lockLeft} ms left)`);
        assert.ok(Date.now() < deadline, `the lock was not renewed (${lockLeft} ms left)`);
      }
    } finally {
      redis.disconnect();
    }
    const killedAt = Date.now();
    first.proc.child.kill('SIGKILL');
    assert.equal((await row(s, id))?.status, 'PROCESSING', 'killed while the job runs');

    const r = await call;
    const body = Buffer.from(await r.arrayBuffer());
    assert.equal(r.status, 200, body.toString('utf8').slice(0, 500));
    assert.ok(body.length > 0, 'the image');
    assert.equal(r.headers.get('x-request-id'), id);

    const done = await row(s, id);
    assert.equal(done?.status, 'COMPLETED');
    assert.equal(done?.attempts, 2, 'started twice: on the killed worker, then on the other');
    assert.notEqual(done?.worker_id, first.workerId, 'finished by another worker');
    const takeoverMs = Number(done?.started_at) - killedAt;
    t.diagnostic(`takeover: the second claim came ${takeoverMs} ms after the kill (its lock had ${lockLeft} ms left)`);
    assert.ok(takeoverMs > 0 && takeoverMs <= TAKEOVER_MS, `the job was started again ${takeoverMs} ms after the kill (bound ${TAKEOVER_MS} ms)`);
  });

  it('counts as waiting, not running, once taken back while every other worker is busy', async (t) => {
    await s.startWorker();
    await s.waitWorkers(2);
    const key = await s.key();
    const url = s.gateways[0]!.url;
    // Two long jobs (at least 40 steps of 1 s each), one on each worker.
    const long = { prompt: 'long [[fault:sleep:1000]]', width: 64, height: 64, steps: 40, cfg: 1 };
    const a = await submit(url, key, long);
    const onA = await runningOn(s, a);
    // The victim runs about 4 s (8 steps of 500 ms): it is killed at once, and runs again.
    const victim = await submit(url, key, { ...long, prompt: 'victim [[fault:sleep:500]]', steps: 8 });
    const onVictim = await runningOn(s, victim);
    assert.notEqual(onA.workerId, onVictim.workerId);
    assert.deepEqual(await depth(url), { waiting: 0, running: 2 });

    const killedAt = Date.now();
    onVictim.proc.child.kill('SIGKILL');
    // Until BullMQ takes the job back (the lock expires) it still counts as running; after,
    // it must count as waiting, while the other worker is still busy with `a`.
    let seen: { waiting: number; running: number } | null = null;
    for (;;) {
      const d = await depth(url);
      const [va, vv] = [await row(s, a), await row(s, victim)];
      assert.equal(va?.status, 'PROCESSING', `the other worker is still busy (it finished before the dead job counted as waiting; last depth ${JSON.stringify(d)}, victim ${JSON.stringify(vv)})`);
      if (d.waiting === 1) {
        seen = d;
        assert.equal(vv?.status, 'QUEUED');
        assert.equal(vv?.worker_id, null);
        break;
      }
      assert.deepEqual(d, { waiting: 0, running: 2 }, 'until it is taken back, the dead job counts as running');
      await sleep(250);
    }
    t.diagnostic(`the dead job counted as waiting ${Date.now() - killedAt} ms after the kill`);
    assert.deepEqual(seen, { waiting: 1, running: 1 }, 'the dead job is waiting; only `a` runs');

    // Freeing the other worker lets it take the dead job, which then completes.
    const c = await fetch(`${url}/v2/requests/${a}/cancel`, { method: 'POST', headers: { 'x-api-key': key } });
    assert.equal(((await c.json()) as { status: string }).status, 'CANCELLED');
    const deadline = Date.now() + 120_000;
    while ((await row(s, victim))?.status !== 'COMPLETED') {
      assert.ok(Date.now() < deadline, `the dead job completes after the other worker freed up (${JSON.stringify(await row(s, victim))})`);
      await sleep(200);
    }
    assert.equal((await row(s, victim))?.worker_id, onA.workerId);
  });
});
