import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { balance, release, reserve, settle } from '../accounts/ledger.js';
import { DIALECTS, tempDb, type TempDb } from '../../test/support/temp-db.js';
import { runKlein } from '../../test/support/cli.js';
import { register as registerCredits } from './credits.js';
import { register as registerKeys } from './keys.js';
import { register as registerUsage } from './usage.js';

for (const dialect of DIALECTS) {
describe(`klein credits and usage (${dialect})`, () => {
  let t: TempDb;
  beforeEach(async () => {
    t = await tempDb(dialect);
  });
  afterEach(async () => t.close());

  const klein = (...args: string[]) => runKlein(t, [registerKeys, registerCredits, registerUsage], args);

  const withDb = <T>(fn: (db: TempDb['db']) => Promise<T>): Promise<T> => fn(t.db);

  test('credits add grants exact decimal credits and prints the new balance', async () => {
    const { account_id } = JSON.parse(await klein('keys', 'create', '--credits', '0.1', '--json')) as { account_id: string };
    assert.equal(await klein('credits', 'add', account_id, '0.2'), `${account_id}: 0.3 credits\n`);
    assert.equal(await klein('credits', 'add', account_id, '4.35'), `${account_id}: 4.65 credits\n`);
    assert.equal(await withDb((db) => balance(db, account_id)), 4_650_000);
    await assert.rejects(klein('credits', 'add', account_id, '0'), /positive/);
    await assert.rejects(klein('credits', 'add', account_id, '1.2345678'), /6 decimal places/);
    await assert.rejects(klein('credits', 'add', 'acct_nope', '1'), /no account acct_nope/);
    assert.equal(await withDb((db) => balance(db, account_id)), 4_650_000);
  });

  test('usage reports one account as an object and all accounts as a list', async () => {
    const a = JSON.parse(await klein('keys', 'create', '--credits', '10', '--json')) as { account_id: string };
    const b = JSON.parse(await klein('keys', 'create', '--credits', '1', '--json')) as { account_id: string };
    await withDb(async (db) => {
      await reserve(db, { accountId: a.account_id, requestId: 'r1', priceMicro: 32_877 });
      await reserve(db, { accountId: a.account_id, requestId: 'r2', priceMicro: 1_000_000 });
      await reserve(db, { accountId: a.account_id, requestId: 'r3', priceMicro: 500_000 });
      await settle(db, 'r1');
      await release(db, 'r2');
    });
    const one = JSON.parse(await klein('usage', a.account_id, '--json')) as Record<string, unknown>;
    assert.deepEqual(one, {
      account_id: a.account_id,
      since: new Date(0).toISOString(),
      credits: '9.467123',
      held: '0.5',
      granted: '10',
      charged: '0.032877',
      refunded: '1',
      settled_requests: 1,
      requests: {},
    });
    const all = JSON.parse(await klein('usage', '--json')) as Array<{ account_id: string; credits: string }>;
    assert.deepEqual(all.map((u) => [u.account_id, u.credits]), [[a.account_id, '9.467123'], [b.account_id, '1']]);
    const text = await klein('usage', a.account_id);
    assert.ok(text.includes('charged 0.032877 (1 requests)') && text.includes('credits 9.467123'), text);
    // A window after everything happened is empty but keeps the balance.
    const later = JSON.parse(await klein('usage', a.account_id, '--json', '--since', '2999-01-01T00:00:00Z')) as Record<string, unknown>;
    assert.equal(later.granted, '0');
    assert.equal(later.credits, '9.467123');
    await assert.rejects(klein('usage', 'acct_nope'), /no account acct_nope/);
    await assert.rejects(klein('usage', '--since', 'yesterday'), /--since/);
  });
});
}
