/**
 * Batching in the fleet, on real PostgreSQL and Redis with the simulated engine and
 * KLEIN_MAX_BATCH=4: the worker runs the job BullMQ hands it together with the compatible
 * requests queued behind it, and never an incompatible one; when its engine dies mid-batch,
 * the asynchronous mates (which no longer have a BullMQ job) are queued again and run, and
 * the synchronous request fails and is released.
 *
 * Requests are queued before the worker can take them (before it starts, or while it runs a
 * request that is then cancelled), so the batches do not depend on timing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateOn, ledgerBalanced, startStack, type Stack } from './stack.js';

type Json = Record<string, any>;
const SMALL = { width: 64, height: 64, steps: 3, cfg: 1 };

describe('fleet batching (simulated engine, KLEIN_MAX_BATCH=4)', () => {
  let s: Stack;
  let url = '';
  before(async () => {
    s = await startStack({ model: 'simulated:20', env: { KLEIN_MAX_BATCH: '4', KLEIN_ENGINE_FAULTS: '1' } });
    url = (await s.startGateway()).url;
  });
  after(async () => s?.stop());

  const call = async (key: string, method: string, path: string, body?: Json): Promise<Json> => {
    const r = await fetch(`${url}${path}`, {
      method,
      headers: { 'x-api-key': key, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${await r.clone().text()}`);
    return (await r.json()) as Json;
  };

  async function settled(key: string, id: string, timeoutMs = 60_000): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await call(key, 'GET', `/v2/requests/${id}`);
      if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(r.status)) return r;
      if (Date.now() > deadline) throw new Error(`${id} still ${r.status}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async function queuedRows(n: number): Promise<void> {
    for (;;) {
      const r = await s.db.selectFrom('requests').select((eb) => eb.fn.countAll().as('n')).where('status', '=', 'QUEUED').executeTakeFirstOrThrow();
      if (Number(r.n) >= n) return;
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  it('runs the handed-over job with the compatible queued ones, and the others alone', async () => {
    const key = await s.key();
    const submit = async (body: Json) => (await call(key, 'POST', '/v2/flux-2-klein-4b', body)).request_id as string;
    const together = [await submit({ ...SMALL, prompt: 'one', seed: 1 }), await submit({ ...SMALL, prompt: 'two', seed: 2 })];
    const alone = [await submit({ ...SMALL, prompt: 'exact', go_fast: false }), await submit({ ...SMALL, prompt: 'wider', width: 96 })];
    together.push(await submit({ ...SMALL, prompt: 'three', seed: 3 }));
    await s.startWorker();
    for (const id of together) {
      const r = await settled(key, id);
      assert.equal(r.status, 'COMPLETED');
      assert.equal(r.metrics.batch_size, 3, `${r.input.prompt}: batch of ${r.metrics.batch_size}`);
    }
    for (const id of alone) {
      const r = await settled(key, id);
      assert.equal(r.status, 'COMPLETED');
      assert.equal(r.metrics.batch_size, 1, `${r.input.prompt}: batch of ${r.metrics.batch_size}`);
    }
  });

  it('requeues the asynchronous mates of a batch whose engine crashed, and fails and releases the synchronous request', async () => {
    // The first test's worker is the only one. It is kept busy by a long request of another
    // account while the batch queues behind it (a synchronous call needs a live worker of its
    // model, else it is a 503), and the blocker is then cancelled, so that the next job the
    // worker takes is the crashing one, with its mates queued behind it.
    const blockerKey = await s.key();
    const blocker = (await call(blockerKey, 'POST', '/v2/flux-2-klein-4b', { ...SMALL, steps: 100, prompt: 'blocker', width: 128 })).request_id as string;
    for (let r = await call(blockerKey, 'GET', `/v2/requests/${blocker}/status`); r.status !== 'PROCESSING'; r = await call(blockerKey, 'GET', `/v2/requests/${blocker}/status`)) {
      assert.equal(r.status, 'QUEUED');
      await new Promise((res) => setTimeout(res, 20));
    }
    const key = await s.key({ credits: '10' });
    const crashing = generateOn(url, key, { ...SMALL, prompt: 'crash [[fault:crash]]' });
    await queuedRows(1);
    const mates = [
      (await call(key, 'POST', '/v2/flux-2-klein-4b', { ...SMALL, prompt: 'mate 1' })).request_id as string,
      (await call(key, 'POST', '/v2/flux-2-klein-4b', { ...SMALL, prompt: 'mate 2' })).request_id as string,
    ];
    const accountId = (await s.db.selectFrom('requests').select('account_id').where('id', '=', mates[0]!).executeTakeFirstOrThrow()).account_id;
    await call(blockerKey, 'POST', `/v2/requests/${blocker}/cancel`);
    const answer = await crashing;
    assert.equal(answer.status, 502);
    assert.equal(((await answer.json()) as Json).code, 'engine_failed');
    for (const id of mates) {
      const r = await settled(key, id);
      assert.equal(r.status, 'COMPLETED');
      assert.equal(r.metrics.batch_size, 2);
    }
    const rows = await s.db.selectFrom('requests').select(['status', 'attempts', 'cost_micro']).where('account_id', '=', accountId).execute();
    assert.deepEqual(rows.map((r) => r.attempts).sort(), [1, 2, 2], 'the mates ran a second time, the sync request once');
    const { balance, sum } = await ledgerBalanced(s.db, accountId);
    assert.equal(balance, sum);
    const charged = rows.reduce((t, r) => t + Number(r.cost_micro ?? 0), 0);
    assert.equal(balance, 10_000_000 - charged, 'only the completed mates were charged');
  });
});
