/**
 * `returnTakenBack` (src/queue/redis/reconciler.ts): when BullMQ took a job back from a
 * worker presumed dead, the row goes back to QUEUED only if it still holds that worker's
 * claim and no one holds the job; a claim made meanwhile (by another worker, or by the
 * same one again) is never undone. The queue is a stand-in whose `getJobState` can act
 * between the row's read and the guarded write, which is where the races are.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Queue } from 'bullmq';
import { createAccount } from '../../src/accounts/accounts.js';
import { returnTakenBack } from '../../src/queue/redis/reconciler.js';
import { claimById, createRequest, getRequest } from '../../src/store/requests.js';
import { DIALECTS, tempDb, type TempDb } from '../support/temp-db.js';

type State = Awaited<ReturnType<Queue['getJobState']>>;

/** A queue whose job is in `state`, after running `meanwhile` (another worker's move). */
const queueIn = (state: State, meanwhile: () => Promise<unknown> = async () => undefined): Pick<Queue, 'getJobState'> => ({
  getJobState: async () => {
    await meanwhile();
    return state;
  },
});

for (const dialect of DIALECTS) {
  describe(`a job taken back from a worker presumed dead (${dialect})`, () => {
    let t: TempDb;
    const claim = (worker: string) => claimById(t.db, 'r1', worker, { leaseMs: 10_000, maxAttempts: 3 });
    beforeEach(async () => {
      t = await tempDb(dialect);
      const acct = (await createAccount(t.db)).id;
      await createRequest(t.db, { id: 'r1', account_id: acct, key_id: 'key_1', route: 'v2/flux-2-klein-4b', params: { prompt: 'p' }, seed: 1, width: 64, height: 64, price_micro: 1000 });
      assert.equal((await claim('dead')).claimed, true);
    });
    afterEach(async () => t.close());

    it('puts the row back to QUEUED (no worker, no lease) while the job waits for nobody', async () => {
      for (const state of ['waiting', 'prioritized', 'delayed'] as const) {
        assert.equal(await returnTakenBack(t.db, queueIn(state), 'r1'), true, state);
        const row = await getRequest(t.db, 'r1');
        assert.deepEqual([row?.status, row?.worker_id, row?.lease_until, row?.attempts], ['QUEUED', null, null, 1]);
        await t.db.updateTable('requests').set({ status: 'PROCESSING', worker_id: 'dead' }).where('id', '=', 'r1').execute();
      }
    });

    it('leaves the row alone while a worker holds the job, or when the job is gone or ended', async () => {
      for (const state of ['active', 'unknown', 'completed', 'failed'] as const) {
        assert.equal(await returnTakenBack(t.db, queueIn(state), 'r1'), false, state);
        assert.deepEqual([(await getRequest(t.db, 'r1'))?.status, (await getRequest(t.db, 'r1'))?.worker_id], ['PROCESSING', 'dead']);
      }
    });

    it('never undoes a claim made after the row was read: another worker\'s, or the same worker\'s again', async () => {
      assert.equal(await returnTakenBack(t.db, queueIn('waiting', () => claim('other')), 'r1'), false);
      assert.deepEqual([(await getRequest(t.db, 'r1'))?.worker_id, (await getRequest(t.db, 'r1'))?.attempts], ['other', 2]);
      // The same worker (not dead after all) took the job again: a new claim, a new attempt.
      assert.equal(await returnTakenBack(t.db, queueIn('waiting', () => claim('other')), 'r1'), false);
      const row = await getRequest(t.db, 'r1');
      assert.deepEqual([row?.status, row?.worker_id, row?.attempts], ['PROCESSING', 'other', 3]);
    });

    it('leaves an ended or queued row alone', async () => {
      await t.db.updateTable('requests').set({ status: 'QUEUED', worker_id: null }).where('id', '=', 'r1').execute();
      assert.equal(await returnTakenBack(t.db, queueIn('waiting'), 'r1'), false);
      await t.db.updateTable('requests').set({ status: 'CANCELLED' }).where('id', '=', 'r1').execute();
      assert.equal(await returnTakenBack(t.db, queueIn('waiting'), 'r1'), false);
      assert.equal((await getRequest(t.db, 'r1'))?.status, 'CANCELLED');
    });
  });
}
