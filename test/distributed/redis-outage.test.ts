/**
 * Redis goes away for a few seconds under load and comes back. Requests in the gap get a
 * clear 503; nothing is lost (every accepted asynchronous request completes), nothing is
 * charged twice or left reserved, every answer agrees with the ledger, and service
 * resumes without anyone restarting anything.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startStack, generateOn, ledgerBalanced, type Stack } from './stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fleet: Redis stopped for a few seconds', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ model: 'simulated:20' });
    await s.startGateway();
    await s.startWorker();
    await s.startWorker();
    await s.waitWorkers(2);
  });
  after(async () => s?.stop());

  it('answers 503 while it is away, loses and double-charges nothing, and resumes by itself', async () => {
    const key = await s.key({ credits: '1000' });
    const g = s.gateways[0]!;
    // Asynchronous work in the queue and on the engines when Redis stops (50 steps ≈ 1 s each).
    const accepted: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${g.url}/v2/flux-2-klein-4b`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': key },
        body: JSON.stringify({ prompt: `async ${i}`, width: 64, height: 64, steps: 50, cfg: 1 }),
      });
      assert.equal(r.status, 200);
      accepted.push(((await r.json()) as { request_id: string }).request_id);
    }
    // Clients that keep calling the synchronous endpoint throughout: a new call every 100 ms,
    // each answered in its own time (a call admitted just before the outage may wait it out).
    const answers: Array<{ status: number; id: string | null; code?: string; error?: string; at: number }> = [];
    const calls: Array<Promise<void>> = [];
    const call = async () => {
      const sent = Date.now();
      const r = await generateOn(g.url, key, { prompt: 'steady', width: 64, height: 64, steps: 2, cfg: 1 }).catch(() => null);
      if (!r) return;
      const body = r.status === 200 ? (await r.arrayBuffer(), null) : ((await r.json()) as { code: string; error: string });
      answers.push({ status: r.status, id: r.headers.get('x-request-id'), code: body?.code, error: body?.error, at: sent });
    };
    const ticker = setInterval(() => calls.push(call()), 100);
    await sleep(700);
    const downAt = Date.now();
    await s.redis.halt();
    await sleep(3000);
    await s.redis.restart();
    const upAt = Date.now();
    // Service resumes by itself: a 200 after Redis is back, within a few seconds.
    for (let i = 0; i < 300 && !answers.some((a) => a.at > upAt && a.status === 200); i++) await sleep(100);
    clearInterval(ticker);
    await Promise.all(calls);

    const during = answers.filter((a) => a.at > downAt + 300 && a.at < upAt);
    assert.ok(during.length > 0, 'requests were made while Redis was away');
    assert.ok(during.every((a) => a.status === 503 || a.status === 502 || a.status === 200), JSON.stringify(during));
    const refused = during.find((a) => a.status === 503);
    assert.ok(refused, 'a 503 while Redis was away');
    assert.equal(refused.code, 'queue_unavailable');
    assert.match(refused.error ?? '', /Redis/);
    const resumed = answers.find((a) => a.at > upAt && a.status === 200);
    assert.ok(resumed, 'service resumed after Redis came back');
    assert.ok(answers.every((a) => [200, 502, 503, 504].includes(a.status)), `unexpected statuses ${[...new Set(answers.map((a) => a.status))]}`);

    // Nothing lost: every accepted asynchronous request completes.
    for (let i = 0; i < 600; i++) {
      const open = await s.db.selectFrom('requests').select('id').where('status', 'in', ['QUEUED', 'PROCESSING']).execute();
      if (open.length === 0) break;
      await sleep(100);
    }
    // A synchronous answer is settled once it has been written out, which may come a moment
    // after its client read it (or released, when its client had gone): wait, up to a minute
    // on a busy machine, until no charge is still held.
    const held = () =>
      s.db
        .selectFrom('requests')
        .select('id')
        .where('status', '=', 'COMPLETED')
        .where((eb) => eb.not(eb.exists(eb.selectFrom('ledger').select('ledger.id').whereRef('ledger.request_id', '=', 'requests.id').where('ledger.phase', '=', 'close'))))
        .execute();
    for (let i = 0; i < 600 && (await held()).length > 0; i++) await sleep(100);
    const rows = await s.db.selectFrom('requests').select(['id', 'status', 'account_id', 'error_code']).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const id of accepted) assert.equal(byId.get(id)?.status, 'COMPLETED', `accepted request ${id}`);
    assert.ok(rows.every((r) => ['COMPLETED', 'FAILED', 'CANCELLED'].includes(r.status)), 'no request left queued or running');

    // Every answer agrees with the record, and the money adds up.
    const ledger = await s.db.selectFrom('ledger').select(['request_id', 'kind']).where('request_id', 'is not', null).execute();
    const kinds = new Map<string, string[]>();
    for (const e of ledger) kinds.set(e.request_id!, [...(kinds.get(e.request_id!) ?? []), e.kind].sort());
    for (const r of rows) {
      // A COMPLETED answer nobody received is released (queue/delivery.ts), not charged.
      const want = r.status === 'COMPLETED' && r.error_code !== 'undelivered' ? ['reserve', 'settle'] : ['release', 'reserve'];
      assert.deepEqual(kinds.get(r.id), want, `ledger of ${r.id} (${r.status})`);
    }
    for (const a of answers) {
      const row = a.id ? byId.get(a.id) : undefined;
      if (a.status === 200) {
        assert.equal(row?.status, 'COMPLETED', `a 200 is a completed request (${a.id})`);
        assert.deepEqual(kinds.get(a.id!), ['reserve', 'settle'], `a 200 is charged (${a.id})`);
      }
      else if (row) assert.notEqual(row.status, 'COMPLETED', `a ${a.status} was not charged (${a.id})`);
    }
    const b = await ledgerBalanced(s.db, rows[0]!.account_id);
    assert.equal(b.balance, b.sum);
  });
});
