/**
 * The periodic sweep, on both dialects: a gateway that is already running closes the open
 * reservation of a row that ended after it started (as a crash of another gateway or worker
 * between the end's steps leaves it), without anyone calling a sweep by hand: the timer's
 * sweep runs the repair, not only the start-up one.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { createAccount } from '../accounts/accounts.js';
import { reserve } from '../accounts/ledger.js';
import { createRequest } from '../store/requests.js';
import { DIALECTS, tempDb, type TempDb } from '../../test/support/temp-db.js';
import { LocalDiskStorage } from '../storage/local-disk.js';
import { ledgerProblems } from '../../test/support/ledger-invariant.js';
import type { RequestStatus } from '../contract/request-states.js';
import { Sweeper } from './sweeper.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const dialect of DIALECTS) {
  describe(`the periodic sweep (${dialect})`, () => {
    let t: TempDb;
    let account: string;
    let sweeper: Sweeper | null = null;
    beforeEach(async () => {
      t = await tempDb(dialect);
      account = (await createAccount(t.db, { creditsMicro: 1_000_000 })).id;
    });
    afterEach(async () => {
      sweeper?.stop();
      await t.close();
    });

    /** A request with its reservation, moved to `status` without its end's other steps. */
    async function leftAs(id: string, status: RequestStatus, o: { webhook?: boolean } = {}): Promise<void> {
      await reserve(t.db, { accountId: account, requestId: id, priceMicro: 100 });
      await createRequest(t.db, {
        id, account_id: account, key_id: 'k', route: 'v2', params: { prompt: 'p', image_urls: [] }, seed: 1, width: 64, height: 64,
        price_micro: 100, hold_until: null, webhook_url: o.webhook ? 'https://example.com/hook' : null,
      });
      await t.db.updateTable('requests').set({ status, cost_micro: status === 'COMPLETED' ? 100 : null }).where('id', '=', id).execute();
    }

    const balance = async () => Number((await t.db.selectFrom('accounts').select('balance_micro').where('id', '=', account).executeTakeFirstOrThrow()).balance_micro);

    test('closes the open reservations of rows that ended after it started, and records their webhooks', async () => {
      sweeper = new Sweeper({ db: t.db, storage: new LocalDiskStorage(t.dataDir), logger: pino({ level: 'silent' }), intervalMs: 100 });
      sweeper.start();
      // Left open after the sweeper started: only a later, periodic sweep can close them.
      await sleep(150);
      await leftAs('done', 'COMPLETED');
      await leftAs('failed', 'FAILED', { webhook: true });
      await leftAs('running', 'PROCESSING');
      assert.notDeepEqual(await ledgerProblems(t.db), [], 'open as a crash leaves them');
      const deadline = Date.now() + 5000;
      while ((await ledgerProblems(t.db)).length > 0) {
        assert.ok(Date.now() < deadline, `the periodic sweep closed them within 5 s: ${(await ledgerProblems(t.db)).join('; ')}`);
        await sleep(50);
      }
      const closes = await t.db.selectFrom('ledger').select(['request_id', 'kind']).where('phase', '=', 'close').orderBy('request_id').execute();
      assert.deepEqual(closes.map((c) => [c.request_id, c.kind]), [['done', 'settle'], ['failed', 'release']], 'the live row is left alone');
      assert.equal(await balance(), 1_000_000 - 200, 'the completed one charged, the live one still reserved');
      assert.equal((await t.db.selectFrom('webhook_deliveries').select('request_id').execute()).length, 1, 'the failed one has its delivery');
    });
  });
}
