import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import { DIALECTS, tempDb, type TempDb } from '../../test/support/temp-db.js';
import { runContenders } from '../../test/support/spawn.js';
import { createAccount } from './accounts.js';
import { balance, grant, release, reserve, settle, usage } from './ledger.js';

for (const dialect of DIALECTS) {
describe(`ledger (${dialect})`, () => {
  let t: TempDb;
  beforeEach(async () => {
    t = await tempDb(dialect);
  });
  afterEach(async () => t.close());

  const C = 1_000_000;

  async function newAccount(credits: number, now = Date.now()): Promise<string> {
    return (await createAccount(t.db, { creditsMicro: credits * C }, now)).id;
  }

  /** The invariant the design promises: the balance is the sum of the account's ledger. */
  async function assertLedgerBalances(db: Kysely<Database>, accountId: string): Promise<void> {
    const sum = await db
      .selectFrom('ledger')
      .select((eb) => eb.fn.sum('amount_micro').as('s'))
      .where('account_id', '=', accountId)
      .executeTakeFirstOrThrow();
    assert.equal(Number(sum.s ?? 0), await balance(db, accountId), 'balance ≠ sum(ledger)');
  }

  test('grant adds exact micro-credits and records them', async () => {
    const a = await newAccount(0);
    assert.equal(await grant(t.db, a, 1), 1);
    assert.equal(await grant(t.db, a, 2_500_000, 'topup'), 2_500_001);
    assert.equal(await balance(t.db, a), 2_500_001);
    await assert.rejects(grant(t.db, a, 0), RangeError);
    await assert.rejects(grant(t.db, a, 1.5), RangeError);
    await assert.rejects(grant(t.db, a, -5), RangeError);
    await assert.rejects(grant(t.db, 'acct_nope', 5), /no account/);
    await assertLedgerBalances(t.db, a);
  });

  test('reserve takes the price only when the balance covers it', async () => {
    const a = await newAccount(3);
    assert.deepEqual(await reserve(t.db, { accountId: a, requestId: 'r1', priceMicro: 2 * C }), { ok: true, balanceMicro: 1 * C });
    assert.deepEqual(await reserve(t.db, { accountId: a, requestId: 'r2', priceMicro: 2 * C }), { ok: false, balanceMicro: 1 * C });
    // The refused reservation left no trace: it can be tried again later.
    assert.equal((await t.db.selectFrom('ledger').select('id').where('request_id', '=', 'r2').execute()).length, 0);
    assert.deepEqual(await reserve(t.db, { accountId: a, requestId: 'r3', priceMicro: 1 * C }), { ok: true, balanceMicro: 0 });
    assert.deepEqual(await reserve(t.db, { accountId: a, requestId: 'r4', priceMicro: 1 }), { ok: false, balanceMicro: 0 });
    await assert.rejects(reserve(t.db, { accountId: 'acct_nope', requestId: 'r5', priceMicro: 1 }), /no account/);
    await assertLedgerBalances(t.db, a);
  });

  test('a replayed reserve does not charge twice', async () => {
    const a = await newAccount(5);
    await reserve(t.db, { accountId: a, requestId: 'r1', priceMicro: 2 * C });
    assert.deepEqual(await reserve(t.db, { accountId: a, requestId: 'r1', priceMicro: 2 * C }), { ok: true, balanceMicro: 3 * C });
    assert.equal(await balance(t.db, a), 3 * C);
    await assertLedgerBalances(t.db, a);
  });

  test('settle charges once: a second settle is a no-op', async () => {
    const a = await newAccount(5);
    await reserve(t.db, { accountId: a, requestId: 'r1', priceMicro: 2 * C });
    assert.equal(await settle(t.db, 'r1'), 'settled');
    assert.equal(await settle(t.db, 'r1'), 'already_settled');
    assert.equal(await settle(t.db, 'r1', 1), 'already_settled');
    assert.equal(await balance(t.db, a), 3 * C);
    await assertLedgerBalances(t.db, a);
  });

  test('release refunds once: a second release is a no-op', async () => {
    const a = await newAccount(5);
    await reserve(t.db, { accountId: a, requestId: 'r1', priceMicro: 2 * C });
    assert.equal(await release(t.db, 'r1'), 'released');
    assert.equal(await release(t.db, 'r1'), 'already_released');
    assert.equal(await balance(t.db, a), 5 * C);
    await assertLedgerBalances(t.db, a);
  });

  test('settle after release is refused, and release after settle does not refund', async () => {
    const a = await newAccount(5);
    await reserve(t.db, { accountId: a, requestId: 'rel', priceMicro: 2 * C });
    await reserve(t.db, { accountId: a, requestId: 'set', priceMicro: 1 * C });
    assert.equal(await release(t.db, 'rel'), 'released');
    assert.equal(await settle(t.db, 'rel'), 'released');
    assert.equal(await settle(t.db, 'set'), 'settled');
    assert.equal(await release(t.db, 'set'), 'settled');
    // Start 5, rel reserved and refunded (±0), set charged 1.
    assert.equal(await balance(t.db, a), 4 * C);
    // A reserve replayed for a closed request is a bug, not a new charge.
    await assert.rejects(reserve(t.db, { accountId: a, requestId: 'rel', priceMicro: 2 * C }), /already settled or released/);
    await assertLedgerBalances(t.db, a);
  });

  test('settle and release of an unknown request change nothing', async () => {
    const a = await newAccount(1);
    assert.equal(await settle(t.db, 'ghost'), 'not_reserved');
    assert.equal(await release(t.db, 'ghost'), 'not_reserved');
    assert.equal(await balance(t.db, a), 1 * C);
  });

  test('settle with a lower cost gives the difference back; never more than reserved', async () => {
    const a = await newAccount(5);
    await reserve(t.db, { accountId: a, requestId: 'r1', priceMicro: 2 * C });
    await assert.rejects(settle(t.db, 'r1', 2 * C + 1), /exceeds/);
    await assert.rejects(settle(t.db, 'r1', -1), RangeError);
    assert.equal(await settle(t.db, 'r1', 750_001), 'settled');
    assert.equal(await balance(t.db, a), 5 * C - 750_001);
    const u = await usage(t.db, a);
    assert.equal(u?.charged_micro, 750_001);
    await assertLedgerBalances(t.db, a);
  });

  test('every step is idempotent: a reserve, settle or release replayed never charges twice or loses a refund', async () => {
    const a = await newAccount(10);
    // Steps replayed (a retried call, a second sweep): each takes effect once.
    for (const id of ['ok1', 'ok2', 'bad1']) await reserve(t.db, { accountId: a, requestId: id, priceMicro: 1 * C });
    await settle(t.db, 'ok1');
    await release(t.db, 'bad1');
    // The submission of ok2 is replayed before it finished: still one reservation.
    await reserve(t.db, { accountId: a, requestId: 'ok2', priceMicro: 1 * C });
    for (let replay = 0; replay < 3; replay++) {
      await settle(t.db, 'ok1');
      await settle(t.db, 'ok2');
      await release(t.db, 'bad1');
      await release(t.db, 'ok1');
    }
    // Two charged (ok1, ok2), bad1 refunded.
    assert.equal(await balance(t.db, a), 8 * C);
    await assertLedgerBalances(t.db, a);
  });

  test('concurrent reserves in one process drain the balance exactly and never below zero', async () => {
    const a = await newAccount(7);
    const results = await Promise.all(
      Array.from({ length: 25 }, (_, i) => reserve(t.db, { accountId: a, requestId: `r${i}`, priceMicro: 1 * C })),
    );
    assert.equal(results.filter((r) => r.ok).length, 7);
    assert.ok(results.every((r) => r.balanceMicro >= 0));
    assert.equal(await balance(t.db, a), 0);
    await assertLedgerBalances(t.db, a);
  });

  test('concurrent reserves from two processes drain the balance exactly and never below zero', async () => {
    const a = await newAccount(25);
    type Answer = { results: Array<{ id: string; ok: boolean; balanceMicro: number }> };
    const answers = await runContenders<Answer>([
      ['reserve', t.target, a, 'p1', '20', String(1 * C)],
      ['reserve', t.target, a, 'p2', '20', String(1 * C)],
    ]);
    const all = answers.flatMap((x) => x.results);
    assert.equal(all.length, 40);
    assert.equal(all.filter((r) => r.ok).length, 25, 'exactly the balance was spent');
    assert.ok(all.every((r) => r.balanceMicro >= 0), 'a balance went negative');
    // Both processes got some: the contention was real.
    assert.ok(answers.every((x) => x.results.some((r) => r.ok)), JSON.stringify(answers.map((x) => x.results.filter((r) => r.ok).length)));
    assert.equal(await balance(t.db, a), 0);
    const reserves = await t.db.selectFrom('ledger').select('request_id').where('kind', '=', 'reserve').execute();
    assert.equal(reserves.length, 25);
    await assertLedgerBalances(t.db, a);
  });

  test('usage summarises grants, charges, refunds, holds and requests since a time', async () => {
    const a = await newAccount(10, 500);
    await reserve(t.db, { accountId: a, requestId: 'r1', priceMicro: 1_250_000 }, 1000);
    await reserve(t.db, { accountId: a, requestId: 'r2', priceMicro: 2 * C }, 1000);
    await reserve(t.db, { accountId: a, requestId: 'r3', priceMicro: 3 * C }, 1000);
    await settle(t.db, 'r1', undefined, 2000);
    await release(t.db, 'r2', 2000);
    await t.db
      .insertInto('requests')
      .values({ id: 'r1', account_id: a, key_id: 'k', route: 'v1', status: 'COMPLETED', params: '{}', seed: 1, width: 64, height: 64, price_micro: 1_250_000, attempts: 1, created_at: 1000, expires_at: 9e12 })
      .execute();
    const u = await usage(t.db, a);
    assert.deepEqual(u, {
      account_id: a,
      since: 0,
      balance_micro: 10 * C - 1_250_000 - 3 * C,
      held_micro: 3 * C,
      granted_micro: 10 * C,
      charged_micro: 1_250_000,
      refunded_micro: 2 * C,
      requests: { COMPLETED: 1 },
      settled_requests: 1,
    });
    const later = await usage(t.db, a, { since: 1500 });
    assert.equal(later?.granted_micro, 0);
    assert.equal(later?.charged_micro, 1_250_000);
    assert.deepEqual(later?.requests, {});
    assert.equal(await usage(t.db, 'acct_nope'), null);
  });
});
}
