import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createAccount } from '../accounts/accounts.js';
import {
  IdempotencyKeyTaken,
  claimBatch,
  claimNext,
  countByStatus,
  createRequest,
  expireOlderThan,
  findByIdempotencyKey,
  getRequest,
  getRequestForAccount,
  oldestQueued,
  queuePosition,
  recoverOnStartup,
  transition,
  unclaim,
  type NewRequest,
} from './requests.js';
import { runContenders } from '../../test/support/spawn.js';
import { DIALECTS, tempDb, type TempDb } from '../../test/support/temp-db.js';

for (const dialect of DIALECTS) {
describe(`request rows (${dialect})`, () => {
  let t: TempDb;
  let acct: string;
  beforeEach(async () => {
    t = await tempDb(dialect);
    acct = (await createAccount(t.db)).id;
  });
  afterEach(async () => t.close());

  const req = (id: string, over: Partial<NewRequest> = {}): NewRequest => ({
    id,
    account_id: acct,
    key_id: 'key_1',
    route: 'v2/flux-2-klein-4b',
    params: { prompt: 'a cat', steps: 4 },
    seed: 42,
    width: 64,
    height: 64,
    price_micro: 1000,
    ...over,
  });

  test('createRequest stores a QUEUED row with params as JSON, retention and no overwrite', async () => {
    const row = await createRequest(t.db, req('r1', { retention_ms: 1000 }), 5000);
    assert.equal(row.status, 'QUEUED');
    assert.equal(row.attempts, 0);
    assert.equal(row.created_at, 5000);
    assert.equal(row.expires_at, 6000);
    assert.deepEqual(JSON.parse((await getRequest(t.db, 'r1'))?.params ?? ''), { prompt: 'a cat', steps: 4 });
    await assert.rejects(createRequest(t.db, req('r1', { seed: 7 })));
    assert.equal((await getRequest(t.db, 'r1'))?.seed, 42);
    assert.equal(await getRequest(t.db, 'nope'), null);
  });

  test("getRequestForAccount hides another account's request", async () => {
    const other = (await createAccount(t.db)).id;
    await createRequest(t.db, req('r1'));
    assert.equal((await getRequestForAccount(t.db, 'r1', acct))?.id, 'r1');
    assert.equal(await getRequestForAccount(t.db, 'r1', other), null);
  });

  test('an idempotency key is unique per account; the loser learns which request holds it', async () => {
    const other = (await createAccount(t.db)).id;
    await createRequest(t.db, req('r1', { idempotency_key: 'k1', idempotency_hash: 'h1' }));
    await assert.rejects(createRequest(t.db, req('r2', { idempotency_key: 'k1', idempotency_hash: 'h2' })), (e: unknown) => {
      assert.ok(e instanceof IdempotencyKeyTaken);
      assert.equal(e.existing.id, 'r1');
      assert.equal(e.existing.idempotency_hash, 'h1');
      return true;
    });
    // Another account may use the same key, and requests without a key never collide.
    await createRequest(t.db, req('r3', { account_id: other, idempotency_key: 'k1' }));
    await createRequest(t.db, req('r4'));
    await createRequest(t.db, req('r5'));
    assert.equal((await findByIdempotencyKey(t.db, acct, 'k1'))?.id, 'r1');
    assert.equal((await findByIdempotencyKey(t.db, other, 'k1'))?.id, 'r3');
    assert.equal(await findByIdempotencyKey(t.db, acct, 'k2'), null);
  });

  test('claimNext takes the oldest QUEUED row, once, and marks it PROCESSING with a lease', async () => {
    await createRequest(t.db, req('b'), 2000);
    await createRequest(t.db, req('a'), 1000);
    await createRequest(t.db, req('c'), 2000);
    const first = await claimNext(t.db, 'w1', 30_000, 9000);
    assert.equal(first?.id, 'a');
    assert.equal(first?.status, 'PROCESSING');
    assert.equal(first?.attempts, 1);
    assert.equal(first?.worker_id, 'w1');
    assert.equal(first?.started_at, 9000);
    assert.equal(first?.lease_until, 39_000);
    // Same created_at: ties break by id, the same order queuePosition uses.
    assert.equal((await claimNext(t.db, 'w1', 1))?.id, 'b');
    assert.equal((await claimNext(t.db, 'w1', 1))?.id, 'c');
    assert.equal(await claimNext(t.db, 'w1', 1), null);
  });

  test('claimNext never gives one job to two claimers (one process, concurrent calls)', async () => {
    for (let i = 0; i < 40; i++) await createRequest(t.db, req(`r${String(i).padStart(2, '0')}`), 1000 + i);
    const claimer = async (w: string) => {
      const got: string[] = [];
      for (let row = await claimNext(t.db, w, 1000); row; row = await claimNext(t.db, w, 1000)) got.push(row.id);
      return got;
    };
    const all = (await Promise.all(['w1', 'w2', 'w3', 'w4'].map(claimer))).flat();
    assert.equal(all.length, 40);
    assert.equal(new Set(all).size, 40);
  });

  test('claimNext never gives one job to two claimers (three processes on one file)', async () => {
    const n = 60;
    for (let i = 0; i < n; i++) await createRequest(t.db, req(`r${String(i).padStart(3, '0')}`), 1000 + i);
    const mine: string[] = [];
    const answers = await runContenders<{ claimed: string[] }>(
      [
        ['claim', t.target, 'child-a'],
        ['claim', t.target, 'child-b'],
      ],
      async () => {
        for (let row = await claimNext(t.db, 'parent', 1000); row; row = await claimNext(t.db, 'parent', 1000)) {
          mine.push(row.id);
          await new Promise((r) => setTimeout(r, 1));
        }
      },
    );
    const all = [...mine, ...answers.flatMap((a) => a.claimed)];
    assert.equal(all.length, n, `claimed ${all.length} of ${n}`);
    assert.equal(new Set(all).size, n, 'a job was claimed twice');
    const rows = await t.db.selectFrom('requests').select(['id', 'status', 'attempts', 'worker_id']).execute();
    assert.ok(rows.every((r) => r.status === 'PROCESSING' && r.attempts === 1));
    // Each row records the claimer that got it.
    const byWorker = new Map(rows.map((r) => [r.id, r.worker_id]));
    for (const id of mine) assert.equal(byWorker.get(id), 'parent');
    for (const [i, a] of answers.entries()) for (const id of a.claimed) assert.equal(byWorker.get(id), i === 0 ? 'child-a' : 'child-b');
  });

  test('claimBatch takes the still-QUEUED rows of a pick, once each, in queue order; unclaim gives one back', async () => {
    for (const [i, id] of ['a', 'b', 'c', 'd', 'e'].entries()) await createRequest(t.db, req(id), 1000 + i);
    assert.deepEqual((await oldestQueued(t.db, 3)).map((r) => r.id), ['a', 'b', 'c']);
    assert.ok(await transition(t.db, 'c', ['QUEUED'], 'CANCELLED'));
    assert.equal((await claimNext(t.db, 'other', 1000))?.id, 'a');
    // a was taken and c cancelled meanwhile: only b and d are claimed.
    const got = await claimBatch(t.db, ['d', 'c', 'b', 'a'], 'w1', 30_000, 9000);
    assert.deepEqual(got.map((r) => [r.id, r.status, r.worker_id, r.attempts, r.started_at, r.lease_until]), [
      ['b', 'PROCESSING', 'w1', 1, 9000, 39_000],
      ['d', 'PROCESSING', 'w1', 1, 9000, 39_000],
    ]);
    assert.deepEqual(await claimBatch(t.db, ['b', 'd'], 'w2', 1000), []);
    assert.deepEqual(await claimBatch(t.db, [], 'w2', 1000), []);
    assert.deepEqual((await oldestQueued(t.db, 10)).map((r) => r.id), ['e']);
    // Given back by its claim only: another worker's name or a later attempt leaves it alone.
    assert.equal(await unclaim(t.db, 'd', { workerId: 'w2', attempts: 1 }), false);
    assert.equal(await unclaim(t.db, 'd', { workerId: 'w1', attempts: 2 }), false);
    assert.equal(await unclaim(t.db, 'd', { workerId: 'w1', attempts: 1 }), true);
    const d = await getRequest(t.db, 'd');
    assert.deepEqual([d?.status, d?.attempts, d?.worker_id, d?.lease_until, d?.started_at], ['QUEUED', 0, null, null, null]);
    assert.equal(await unclaim(t.db, 'd', { workerId: 'w1', attempts: 1 }), false);
  });

  test('claimBatch never gives one job to two claimers (concurrent picks of the same rows)', async () => {
    for (let i = 0; i < 30; i++) await createRequest(t.db, req(`r${String(i).padStart(2, '0')}`), 1000 + i);
    const claimer = async (w: string) => {
      const got: string[] = [];
      for (;;) {
        const pick = (await oldestQueued(t.db, 4)).map((r) => r.id);
        if (pick.length === 0) return got;
        got.push(...(await claimBatch(t.db, pick, w, 1000)).map((r) => r.id));
      }
    };
    const all = (await Promise.all(['w1', 'w2', 'w3'].map(claimer))).flat();
    assert.equal(all.length, 30);
    assert.equal(new Set(all).size, 30);
  });

  test('queuePosition counts down as jobs ahead are claimed or cancelled; 0 when not queued', async () => {
    for (const [i, id] of ['a', 'b', 'c', 'd'].entries()) await createRequest(t.db, req(id), 1000 + i);
    assert.deepEqual(await Promise.all(['a', 'b', 'c', 'd'].map((id) => queuePosition(t.db, id))), [1, 2, 3, 4]);
    await claimNext(t.db, 'w', 1000);
    assert.equal(await queuePosition(t.db, 'a'), 0);
    assert.equal(await queuePosition(t.db, 'd'), 3);
    assert.ok(await transition(t.db, 'b', ['QUEUED'], 'CANCELLED'));
    assert.equal(await queuePosition(t.db, 'd'), 2);
    await claimNext(t.db, 'w', 1000);
    assert.equal(await queuePosition(t.db, 'd'), 1);
    assert.equal(await queuePosition(t.db, 'unknown'), 0);
  });

  test('transition is conditional, stamps completion, and refuses moves outside the state table', async () => {
    await createRequest(t.db, req('r1'));
    // Not PROCESSING yet: nothing happens.
    assert.equal(await transition(t.db, 'r1', ['PROCESSING'], 'COMPLETED'), false);
    assert.equal((await getRequest(t.db, 'r1'))?.status, 'QUEUED');
    await claimNext(t.db, 'w', 1000);
    assert.equal(await transition(t.db, 'r1', ['PROCESSING'], 'COMPLETED', { cost_micro: 900, output_key: 'out/r1.png', output_format: 'png' }, 7777), true);
    const done = await getRequest(t.db, 'r1');
    assert.equal(done?.status, 'COMPLETED');
    assert.equal(done?.completed_at, 7777);
    assert.equal(done?.cost_micro, 900);
    assert.equal(done?.output_key, 'out/r1.png');
    // A late cancel loses the race and changes nothing.
    assert.equal(await transition(t.db, 'r1', ['QUEUED', 'PROCESSING'], 'CANCELLED'), false);
    assert.equal((await getRequest(t.db, 'r1'))?.status, 'COMPLETED');
    // Moves the table forbids are bugs, refused before touching the row.
    await assert.rejects(transition(t.db, 'r1', ['COMPLETED'], 'QUEUED'), /illegal/);
    await assert.rejects(transition(t.db, 'r1', ['QUEUED'], 'COMPLETED'), /illegal/);
    await assert.rejects(transition(t.db, 'r1', [], 'FAILED'), /illegal/);
    assert.equal(await transition(t.db, 'missing', ['QUEUED'], 'CANCELLED'), false);
  });

  test('requeue (PROCESSING → QUEUED) clears the worker and lease, keeps attempts', async () => {
    await createRequest(t.db, req('r1'));
    await claimNext(t.db, 'w', 1000);
    assert.ok(await transition(t.db, 'r1', ['PROCESSING'], 'QUEUED'));
    const row = await getRequest(t.db, 'r1');
    assert.equal(row?.status, 'QUEUED');
    assert.equal(row?.worker_id, null);
    assert.equal(row?.lease_until, null);
    assert.equal(row?.completed_at, null);
    assert.equal((await claimNext(t.db, 'w2', 1000))?.attempts, 2);
  });

  test('recoverOnStartup requeues interrupted jobs with attempts left and fails the rest', async () => {
    for (const id of ['q', 'once', 'twice', 'done']) await createRequest(t.db, req(id));
    // once: claimed once; twice: claimed, requeued, claimed again; done: completed; q: never claimed.
    await t.db.updateTable('requests').set({ status: 'PROCESSING', attempts: 1, worker_id: 'old' }).where('id', '=', 'once').execute();
    await t.db.updateTable('requests').set({ status: 'PROCESSING', attempts: 2, worker_id: 'old' }).where('id', '=', 'twice').execute();
    await t.db.updateTable('requests').set({ status: 'COMPLETED', attempts: 1 }).where('id', '=', 'done').execute();
    const r = await t.db.transaction().execute((trx) => recoverOnStartup(trx, { maxAttempts: 2 }, 4242));
    assert.deepEqual(r, { requeued: ['once'], failed: ['twice'] });
    const rows = new Map((await t.db.selectFrom('requests').selectAll().execute()).map((x) => [x.id, x]));
    assert.equal(rows.get('once')?.status, 'QUEUED');
    assert.equal(rows.get('once')?.worker_id, null);
    assert.equal(rows.get('twice')?.status, 'FAILED');
    assert.equal(rows.get('twice')?.error_code, 'engine_failed');
    assert.equal(rows.get('twice')?.completed_at, 4242);
    assert.equal(rows.get('q')?.status, 'QUEUED');
    assert.equal(rows.get('done')?.status, 'COMPLETED');
    // Nothing left to recover: a second start-up is a no-op.
    assert.deepEqual(await t.db.transaction().execute((trx) => recoverOnStartup(trx, { maxAttempts: 2 })), { requeued: [], failed: [] });
  });

  test('countByStatus counts every state, zeros included, or only those asked for', async () => {
    for (const id of ['a', 'b', 'c']) await createRequest(t.db, req(id));
    await claimNext(t.db, 'w', 1000);
    assert.deepEqual(await countByStatus(t.db), { QUEUED: 2, PROCESSING: 1, COMPLETED: 0, FAILED: 0, CANCELLED: 0 });
    assert.deepEqual(await countByStatus(t.db, ['QUEUED', 'PROCESSING']), { QUEUED: 2, PROCESSING: 1 });
  });

  test('expireOlderThan deletes only finished rows past expiry and returns their output keys', async () => {
    await createRequest(t.db, req('old-done', { retention_ms: 10 }), 0);
    await createRequest(t.db, req('old-failed', { retention_ms: 10 }), 0);
    await createRequest(t.db, req('old-queued', { retention_ms: 10 }), 0);
    await createRequest(t.db, req('new-done', { retention_ms: 10_000 }), 0);
    await t.db.updateTable('requests').set({ status: 'COMPLETED', output_key: 'o/old.png' }).where('id', '=', 'old-done').execute();
    await t.db.updateTable('requests').set({ status: 'FAILED' }).where('id', '=', 'old-failed').execute();
    await t.db.updateTable('requests').set({ status: 'COMPLETED', output_key: 'o/new.png' }).where('id', '=', 'new-done').execute();
    const r = await expireOlderThan(t.db, 100);
    assert.deepEqual(r.ids.sort(), ['old-done', 'old-failed']);
    assert.deepEqual(r.outputKeys, ['o/old.png']);
    const left = (await t.db.selectFrom('requests').select('id').execute()).map((x) => x.id).sort();
    // A queued row still holds reserved credits: it is never deleted here.
    assert.deepEqual(left, ['new-done', 'old-queued']);
    assert.deepEqual(await expireOlderThan(t.db, 100), { ids: [], outputKeys: [] });
  });
});
}
