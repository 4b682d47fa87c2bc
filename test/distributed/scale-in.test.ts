/**
 * A fleet that scales in has not crashed: a worker that drains on SIGTERM, or leaves when
 * idle (KLEIN_IDLE_EXIT), drops out of the gateway's fleet view for good. It must be
 * neither listed nor `lost`, also after the heartbeat's time to live (10 s) has passed:
 * a heartbeat written after the worker left would expire into a `lost` worker, kept for
 * an hour, and every scale-to-zero would read as a crash.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startStack, type Proc, type Stack } from './stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The heartbeat's time to live (fleet-worker.ts) plus a margin. */
const AFTER_TTL_MS = 12_000;

type Fleet = { workers: { ready: number; lost: number; list: Array<{ id: string; state: string }>; lost_ids: string[] } };

async function submit(url: string, key: string, body: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { request_id: string }).request_id;
}

async function waitStatus(s: Stack, id: string, want: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await s.db.selectFrom('requests').select('status').where('id', '=', id).executeTakeFirst();
    if (row?.status === want) return;
    if (Date.now() > deadline) throw new Error(`${id} is ${row?.status}, not ${want}`);
    await sleep(50);
  }
}

/** Worker ids are `<host>:<pid>` (cli/components.ts). */
const isProc = (id: string, p: Proc) => id.split(':')[1] === String(p.child.pid);

async function fleet(s: Stack): Promise<Fleet['workers']> {
  return ((await (await fetch(`${s.gateways[0]!.url}/health`)).json()) as Fleet).workers;
}

/** The worker `p` is neither in the list nor lost, now and after the heartbeat's TTL. */
async function goneForGood(s: Stack, p: Proc, exitedAt: number): Promise<void> {
  const now = await fleet(s);
  assert.deepEqual(now.list.filter((w) => isProc(w.id, p)), [], 'not listed once it left');
  assert.deepEqual(now.lost_ids.filter((id) => isProc(id, p)), [], 'not lost once it left');
  await sleep(Math.max(0, exitedAt + AFTER_TTL_MS - Date.now()));
  const later = await fleet(s);
  assert.deepEqual(later.list.filter((w) => isProc(w.id, p)), [], `not listed ${AFTER_TTL_MS / 1000} s later`);
  assert.deepEqual(later.lost_ids.filter((id) => isProc(id, p)), [], `not lost ${AFTER_TTL_MS / 1000} s later`);
  assert.equal(later.lost, 0);
}

describe('fleet: a worker that leaves is gone, not lost', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ model: 'simulated:20', env: { KLEIN_ENGINE_FAULTS: '1' } });
    await s.startGateway();
  });
  after(async () => s?.stop());

  it('a worker drained by SIGTERM (with a job running) leaves the fleet view, also after the heartbeat TTL', async () => {
    const key = await s.key();
    const url = s.gateways[0]!.url;
    const w = await s.startWorker();
    await s.waitWorkers(1);
    assert.equal((await fleet(s)).list.filter((x) => isProc(x.id, w)).length, 1, 'listed while it works');
    const id = await submit(url, key, { prompt: 'finishing [[fault:sleep:100]]', width: 64, height: 64, steps: 10, cfg: 1 });
    await waitStatus(s, id, 'PROCESSING');
    w.child.kill('SIGTERM');
    assert.equal(await w.exited, 0, w.log());
    const exitedAt = Date.now();
    await waitStatus(s, id, 'COMPLETED', 1000);
    await goneForGood(s, w, exitedAt);
  });

  it('a worker leaving when idle (KLEIN_IDLE_EXIT) leaves the fleet view, also after the heartbeat TTL', async () => {
    const key = await s.key();
    const url = s.gateways[0]!.url;
    // A job waits for it, so it has been READY and worked before it goes idle.
    const id = await submit(url, key, { prompt: 'one job', width: 64, height: 64, steps: 2, cfg: 1 });
    const w = await s.startWorker({ KLEIN_IDLE_EXIT: '2' });
    await waitStatus(s, id, 'COMPLETED');
    const code = await Promise.race([w.exited, sleep(30_000).then(() => 'still running')]);
    assert.equal(code, 0, w.log());
    await goneForGood(s, w, Date.now());
  });
});
