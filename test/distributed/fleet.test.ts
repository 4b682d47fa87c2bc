/**
 * The fleet's behaviour across processes, on real PostgreSQL and Redis: limits that hold
 * across gateways, progress and cancel across machines, engine crashes retried by another
 * attempt, graceful drain, scale to zero and the metrics autoscalers read.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startStack, generateOn, type Stack } from './stack.js';
import { freePort } from '../support/services.js';
import { until } from '../support/until.js';
import { Redis } from 'ioredis';
import { KleinClient, type KleinEvent } from '../../src/client/index.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function submit(url: string, key: string, body: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { request_id: string }).request_id;
}

async function statusOf(url: string, key: string, id: string): Promise<{ status: string; queue_position: number; progress: { step: number; total: number } | null }> {
  return (await (await fetch(`${url}/v2/requests/${id}/status`, { headers: { 'x-api-key': key } })).json()) as never;
}

async function waitStatus(url: string, key: string, id: string, want: string[], timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = (await statusOf(url, key, id)).status;
    if (want.includes(s)) return s;
    if (Date.now() > deadline) throw new Error(`${id} is ${s}, not ${want.join('|')}`);
    await sleep(50);
  }
}

describe('fleet: two gateways, two workers', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ model: 'simulated:20', env: { KLEIN_ENGINE_FAULTS: '1' } });
    await s.startFleet(2, 2);
  });
  after(async () => s?.stop());

  it('holds a key\'s per-minute limit across both gateways (never more admitted than the limit)', async () => {
    const key = await s.key({ rpm: 10 });
    // 40 calls at once, alternating gateways; the bodies are refused after the limit check
    // (400), so what counts is only whether the limiter admitted them.
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        generateOn(s.gateways[i % 2]!.url, key, { steps: 1 }).then(async (r) => {
          await r.arrayBuffer();
          return { status: r.status, reset: r.headers.get('x-rate-limit-reset-at-utc'), retry: r.headers.get('retry-after') };
        }),
      ),
    );
    const byWindow = new Map<string, number>();
    for (const a of answers) if (a.status !== 429) byWindow.set(a.reset ?? '', (byWindow.get(a.reset ?? '') ?? 0) + 1);
    for (const [w, n] of byWindow) assert.ok(n <= 10, `${n} admitted in the window ending ${w}`);
    assert.ok([...byWindow.values()].some((n) => n === 10), 'the limit was reached');
    const limited = answers.filter((a) => a.status === 429);
    assert.ok(limited.length >= 20);
    assert.ok(limited.every((a) => Number(a.retry) >= 1));
  });

  it('holds a key\'s concurrency limit across both gateways', async () => {
    const key = await s.key({ concurrency: 2 });
    const ids = await Promise.all([0, 1].map((i) => submit(s.gateways[i]!.url, key, { prompt: `slow [[fault:sleep:200]]`, width: 64, height: 64, steps: 5, cfg: 1 })));
    const third = await fetch(`${s.gateways[1]!.url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify({ prompt: 'third', width: 64, height: 64, steps: 1, cfg: 1 }) });
    assert.equal(third.status, 429);
    assert.equal(((await third.json()) as { code: string }).code, 'concurrency_limited');
    for (const id of ids) await waitStatus(s.gateways[0]!.url, key, id, ['COMPLETED']);
    // The slots came back when the worker ended the requests.
    await submit(s.gateways[0]!.url, key, { prompt: 'after', width: 64, height: 64, steps: 1, cfg: 1 });
  });

  it('streams a worker\'s progress through another gateway, and cancels a running request from there', async () => {
    const key = await s.key();
    const [a, b] = [s.gateways[0]!.url, s.gateways[1]!.url];
    const onB = new KleinClient({ baseUrl: b, apiKey: key });
    const before = await onB.credits();
    const id = await submit(a, key, { prompt: 'long [[fault:sleep:150]]', width: 64, height: 64, steps: 40, cfg: 1 });
    const seen: KleinEvent[] = [];
    let cancelledAt = 0;
    for await (const e of onB.events(id, { preview: true })) {
      seen.push(e);
      if (e.event === 'progress' && seen.filter((x) => x.event === 'progress').length === 3) {
        // The status on the other gateway shows the worker's progress too.
        assert.ok((await statusOf(a, key, id)).progress);
        cancelledAt = Date.now();
        assert.equal((await onB.cancel(id)).status, 'CANCELLED');
      }
    }
    const progress = seen.flatMap((e) => (e.event === 'progress' ? [e.data] : []));
    assert.ok(progress.length >= 3, 'progress reached the other gateway');
    assert.deepEqual(progress.map((p) => p.step), [...progress.map((p) => p.step)].sort((x, y) => x - y));
    assert.ok(progress.every((p) => p.total === 40));
    assert.equal(seen.at(-1)?.event, 'cancelled');
    assert.ok(Date.now() - cancelledAt < 3000, 'stopped within a step or two');
    assert.equal(await onB.credits(), before, 'not charged');
  });

  it('cancels a queued request from any gateway; the worker skips it', async () => {
    const key = await s.key();
    const url = s.gateways[0]!.url;
    // Two long jobs occupy both workers; the third waits.
    const busy = await Promise.all([0, 1].map(() => submit(url, key, { prompt: 'busy [[fault:sleep:100]]', width: 64, height: 64, steps: 10, cfg: 1 })));
    const queued = await submit(url, key, { prompt: 'waiting', width: 64, height: 64, steps: 2, cfg: 1 });
    assert.equal((await statusOf(s.gateways[1]!.url, key, queued)).queue_position >= 1, true);
    const c = await fetch(`${s.gateways[1]!.url}/v2/requests/${queued}/cancel`, { method: 'POST', headers: { 'x-api-key': key } });
    assert.deepEqual(await c.json(), { request_id: queued, status: 'CANCELLED', cancelled: true });
    for (const id of busy) await waitStatus(url, key, id, ['COMPLETED']);
    const row = await s.db.selectFrom('requests').select(['status', 'attempts']).where('id', '=', queued).executeTakeFirstOrThrow();
    assert.deepEqual(row, { status: 'CANCELLED', attempts: 0 });
  });

  it('retries an asynchronous request whose engine crashed, up to the set attempts, then fails and releases it', async () => {
    const key = await s.key();
    const url = s.gateways[1]!.url;
    const id = await submit(url, key, { prompt: 'always crashes [[fault:crash]]', width: 64, height: 64, steps: 2, cfg: 1 });
    await waitStatus(url, key, id, ['FAILED'], 60_000);
    const rec = (await (await fetch(`${url}/v2/requests/${id}`, { headers: { 'x-api-key': key } })).json()) as { error: { code: string } };
    assert.equal(rec.error.code, 'engine_failed');
    const row = await s.db.selectFrom('requests').select('attempts').where('id', '=', id).executeTakeFirstOrThrow();
    assert.equal(row.attempts, 3);
    const kinds = (await s.db.selectFrom('ledger').select('kind').where('request_id', '=', id).execute()).map((e) => e.kind).sort();
    assert.deepEqual(kinds, ['release', 'reserve']);
    await s.waitWorkers(2);
  });
});

describe('fleet: drain, scale to zero, metrics', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ model: 'simulated:20', env: { KLEIN_ENGINE_FAULTS: '1' } });
    await s.startGateway();
  });
  after(async () => s?.stop());

  it('queues with no worker, exports depth and age, and a worker that starts later serves it', async () => {
    const key = await s.key();
    const url = s.gateways[0]!.url;
    const id = await submit(url, key, { prompt: 'waits for a worker', width: 64, height: 64, steps: 2, cfg: 1 });
    // The gauges are read from the queue once a second: wait for a reading a second old.
    let m = '';
    const age = () => Number(/^klein_queue_oldest_age_seconds\{model="flux-2-klein-4b"\} (\S+)$/m.exec(m)?.[1]);
    await until('the oldest job is a second old in /metrics', async () => {
      m = await (await fetch(`${url}/metrics`)).text();
      return age() >= 1;
    });
    assert.match(m, /^klein_jobs_waiting\{model="flux-2-klein-4b"\} 1$/m);
    const h = (await (await fetch(`${url}/health`)).json()) as { status: string; workers: { ready: number }; queue: { waiting: number } };
    assert.equal(h.status, 'READY', 'a gateway with no worker still takes work (scale to zero)');
    assert.equal(h.workers.ready, 0);
    assert.equal(h.queue.waiting, 1);
    // The list of its model's queue (what a KEDA redis trigger would read, deploy/kubernetes/worker-<slug>.yaml) holds it.
    const r = new Redis(s.redis.url);
    assert.equal(await r.llen('klein:bull:generate.flux-2-klein-4b:wait'), 1);
    r.disconnect();
    await s.startWorker({ KLEIN_IDLE_EXIT: '2' });
    await waitStatus(url, key, id, ['COMPLETED'], 60_000);
    assert.match(await (await fetch(`${url}/metrics`)).text(), /^klein_jobs_waiting\{model="flux-2-klein-4b"\} 0$/m);
  });

  it('a worker with KLEIN_IDLE_EXIT leaves the fleet after that long without a job', async () => {
    const w = s.workers.at(-1)!;
    const code = await Promise.race([w.exited, sleep(20_000).then(() => 'still running')]);
    assert.equal(code, 0, w.log());
    const h = (await (await fetch(`${s.gateways[0]!.url}/health`)).json()) as { workers: { ready: number; lost: number } };
    assert.deepEqual([h.workers.ready, h.workers.lost], [0, 0], 'it left cleanly (not lost)');
  });

  it('SIGTERM drains a worker: its running job completes and it takes no other', async () => {
    const key = await s.key();
    const url = s.gateways[0]!.url;
    const port = await freePort();
    const w = await s.startWorker({ KLEIN_WORKER_METRICS_PORT: String(port) });
    await s.waitWorkers(1);
    // The worker's own monitor: the stages only it measures, and its state.
    await waitStatus(url, key, await submit(url, key, { prompt: 'warm', width: 64, height: 64, steps: 2, cfg: 1 }), ['COMPLETED']);
    // (The row turns COMPLETED a moment before the worker counts it: wait for the count, up
    // to a minute on a busy machine.)
    let metrics = '';
    for (let i = 0; i < 1200 && !/^klein_jobs_finished_total/m.test(metrics); i++) {
      if (i > 0) await sleep(50);
      metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    }
    assert.match(metrics, /^klein_jobs_finished_total\{status="COMPLETED"\} 1$/m);
    assert.match(metrics, /^klein_stage_seconds_count\{stage="denoise"\} 1$/m);
    const first = await submit(url, key, { prompt: 'finishing [[fault:sleep:100]]', width: 64, height: 64, steps: 15, cfg: 1 });
    await waitStatus(url, key, first, ['PROCESSING']);
    // The gateway's health states: the one engine runs a job, so the process is BUSY (and ready).
    const mine = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { status: string; workers: Array<{ state: string }> };
    assert.deepEqual([mine.status, mine.workers[0]?.state], ['BUSY', 'BUSY']);
    assert.equal((await fetch(`http://127.0.0.1:${port}/health/ready`)).status, 200);
    const unknown = await fetch(`http://127.0.0.1:${port}/nothing`);
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { code: string }).code, 'not_found');
    const second = await submit(url, key, { prompt: 'left for others', width: 64, height: 64, steps: 1, cfg: 1 });
    w.child.kill('SIGTERM');
    assert.equal(await w.exited, 0, w.log());
    assert.equal((await statusOf(url, key, first)).status, 'COMPLETED');
    assert.equal((await statusOf(url, key, second)).status, 'QUEUED');
    await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'the monitor stopped with the worker');
    await s.startWorker();
    await waitStatus(url, key, second, ['COMPLETED'], 60_000);
  });

  it('SIGTERM drains a gateway: an open synchronous call is answered, then it stops', async () => {
    const key = await s.key();
    const g = await s.startGateway();
    await s.waitWorkers(1);
    const open = generateOn(g.url, key, { prompt: 'in flight [[fault:sleep:100]]', width: 64, height: 64, steps: 10, cfg: 1 });
    const running = () => s.db.selectFrom('requests').select('id').where('status', '=', 'PROCESSING').where('params', 'like', '%in flight%').executeTakeFirst();
    await until('the call runs', async () => (await running()) !== undefined);
    g.child.kill('SIGTERM');
    const r = await open;
    assert.equal(r.status, 200);
    assert.equal(await g.exited, 0, g.log());
    await assert.rejects(fetch(`${g.url}/health`));
  });
});
