/**
 * The repair sweep and held charges, on both dialects: what a crash or a gateway that died
 * left open is closed by the right ledger step, held charges wait for their deadline, and a
 * second sweep changes nothing. Rows are put in each state directly, as a crash leaves them.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { createAccount } from '../accounts/accounts.js';
import { reserve, settle } from '../accounts/ledger.js';
import { createRequest } from '../store/requests.js';
import { DIALECTS, tempDb, type TempDb } from '../../test/support/temp-db.js';
import { LocalDiskStorage } from '../storage/local-disk.js';
import { ledgerProblems } from '../../test/support/ledger-invariant.js';
import type { RequestStatus } from '../contract/request-states.js';
import { releaseUndelivered, settleDelivered } from './delivery.js';
import { repairEnds } from './repair.js';

for (const dialect of DIALECTS) {
  describe(`repair sweep and held charges (${dialect})`, () => {
    let t: TempDb;
    let account: string;
    let storage: LocalDiskStorage;
    beforeEach(async () => {
      t = await tempDb(dialect);
      storage = new LocalDiskStorage(t.dataDir);
      account = (await createAccount(t.db, { creditsMicro: 1_000_000 })).id;
    });
    afterEach(async () => t.close());

    /** A request with its reservation, moved to `status` without its end's other steps (as a crash leaves it). */
    async function leftAs(id: string, status: RequestStatus, o: { holdUntil?: number; webhook?: boolean; output?: boolean } = {}): Promise<void> {
      await reserve(t.db, { accountId: account, requestId: id, priceMicro: 100 });
      await createRequest(t.db, {
        id, account_id: account, key_id: 'k', route: 'v1', params: { prompt: 'p', image_urls: [] }, seed: 1, width: 64, height: 64,
        price_micro: 100, hold_until: o.holdUntil ?? null, webhook_url: o.webhook ? 'https://example.com/hook' : null,
      });
      const outputKey = o.output ? `outputs/${id}.png` : null;
      if (outputKey) await storage.put(outputKey, Buffer.from('png'));
      await t.db.updateTable('requests').set({ status, cost_micro: status === 'COMPLETED' ? 100 : null, output_key: outputKey }).where('id', '=', id).execute();
    }

    const balance = async () => Number((await t.db.selectFrom('accounts').select('balance_micro').where('id', '=', account).executeTakeFirstOrThrow()).balance_micro);

    test('ended rows with open reservations are settled or released; live rows are left alone', async () => {
      await leftAs('done', 'COMPLETED');
      await leftAs('failed', 'FAILED', { webhook: true });
      await leftAs('cancelled', 'CANCELLED');
      await leftAs('running', 'PROCESSING');
      await leftAs('queued', 'QUEUED');
      assert.equal(await balance(), 1_000_000 - 500);
      const r = await repairEnds(t.db, storage);
      assert.deepEqual(r.settled, ['done']);
      assert.deepEqual(r.released.sort(), ['cancelled', 'failed']);
      assert.deepEqual(r.webhooks, ['failed']);
      assert.equal(await balance(), 1_000_000 - 300, 'the two live reservations stay, the settled one is charged');
      const problems = await ledgerProblems(t.db);
      assert.deepEqual(problems, [], 'exact once repaired');
      const again = await repairEnds(t.db, storage, { orphans: true });
      assert.deepEqual(again, { settled: [], released: [], undelivered: [], orphans: [], webhooks: [] }, 'a second sweep changes nothing');
    });

    test('held charges wait for their deadline, then are released as undelivered, output deleted', async () => {
      const now = 1_000_000_000;
      await leftAs('held-late', 'COMPLETED', { holdUntil: now - 1, output: true });
      await leftAs('held-early', 'COMPLETED', { holdUntil: now + 60_000, output: true });
      const r = await repairEnds(t.db, storage, { now });
      assert.deepEqual(r.undelivered, ['held-late']);
      assert.deepEqual(await ledgerProblems(t.db, { allowHeld: true }), []);
      const late = await t.db.selectFrom('requests').selectAll().where('id', '=', 'held-late').executeTakeFirstOrThrow();
      assert.deepEqual([late.status, Number(late.cost_micro), late.output_key, late.error_code], ['COMPLETED', 0, null, 'undelivered']);
      assert.equal(await storage.get('outputs/held-late.png'), null);
      assert.notEqual(await storage.get('outputs/held-early.png'), null);
      // An embedded server starting releases every held charge: nobody can deliver them now.
      assert.deepEqual((await repairEnds(t.db, storage, { now, releaseAllHeld: true })).undelivered, ['held-early']);
      assert.deepEqual(await ledgerProblems(t.db), []);
      assert.equal(await balance(), 1_000_000);
    });

    test('a reservation without its request row is released (start-up only)', async () => {
      await reserve(t.db, { accountId: account, requestId: 'lost', priceMicro: 250 });
      assert.deepEqual((await repairEnds(t.db, storage)).orphans, [], 'the periodic sweep does not scan the ledger');
      assert.deepEqual((await repairEnds(t.db, storage, { orphans: true })).orphans, ['lost']);
      assert.equal(await balance(), 1_000_000);
    });

    test('the images of one answer are settled together or not at all', async () => {
      await leftAs('a', 'COMPLETED', { holdUntil: Date.now() + 60_000 });
      await leftAs('b', 'COMPLETED', { holdUntil: Date.now() + 60_000 });
      await leftAs('c', 'COMPLETED', { holdUntil: Date.now() + 60_000 });
      assert.deepEqual(await releaseUndelivered(t.db, storage, ['c'], 'test'), ['c']);
      assert.equal(await settleDelivered(t.db, ['a', 'b', 'c']), false, 'c was released');
      assert.equal((await t.db.selectFrom('ledger').select('id').where('kind', '=', 'settle').execute()).length, 0, 'none settled');
      assert.equal(await settleDelivered(t.db, ['a', 'b']), true);
      assert.deepEqual(await releaseUndelivered(t.db, storage, ['a', 'b'], 'too late'), [], 'a delivered charge is never released');
      assert.deepEqual(await ledgerProblems(t.db), []);
      assert.equal(await balance(), 1_000_000 - 200);
    });

    test('releaseUndelivered leaves alone what is not a held, completed request', async () => {
      await leftAs('running', 'PROCESSING', { holdUntil: Date.now() + 60_000 });
      await leftAs('charged', 'COMPLETED');
      await settle(t.db, 'charged');
      assert.deepEqual(await releaseUndelivered(t.db, storage, ['running', 'charged', 'missing'], 'x'), []);
      const charged = await t.db.selectFrom('requests').selectAll().where('id', '=', 'charged').executeTakeFirstOrThrow();
      assert.equal(charged.error_code, null);
    });
  });
}
