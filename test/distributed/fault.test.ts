/**
 * The fleet under a fault: two gateways and three workers on real PostgreSQL and Redis,
 * 200 synchronous requests from four clients spread over both gateways, and one worker
 * killed with SIGKILL while it runs a job. Every request must complete exactly once, and
 * the money must add up: the sum of charges equals the sum of x-cost, each request has one
 * reservation and one settlement, and every balance equals the sum of its ledger.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startStack, generateOn, ledgerBalanced, type Stack } from './stack.js';
import { creditsToMicro } from '../../src/billing/pricing.js';
import type { WorkerInfo } from '../../src/queue/redis/fleet.js';

describe('fleet: two gateways, three workers, a worker killed mid-job', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ model: 'simulated:15' });
    await s.startFleet(2, 3);
  });
  after(async () => s?.stop());

  it('completes all 200 requests exactly once, with exact charges, after a SIGKILL', async () => {
    const keys = await Promise.all([0, 1, 2, 3].map(() => s.key({ credits: '100' })));
    const results: Array<{ status: number; id: string; cost: string | null }> = [];
    let next = 0;
    const TOTAL = 200;
    // Four clients, five requests in flight each, alternating between the gateways.
    const client = async (c: number) => {
      for (;;) {
        const n = next++;
        if (n >= TOTAL) return;
        const g = s.gateways[n % 2]!;
        const r = await generateOn(g.url, keys[c]!, { prompt: `request ${n}`, width: 64, height: 64, steps: 6, cfg: 1, seed: n });
        await r.arrayBuffer();
        results.push({ status: r.status, id: r.headers.get('x-request-id') ?? '', cost: r.headers.get('x-cost') });
      }
    };
    let killed: { worker: string; job: string } | null = null;
    const killer = (async () => {
      // Once some work is done, kill a worker that is running a job.
      while (results.length < 40) await new Promise((r) => setTimeout(r, 20));
      for (;;) {
        const h = (await (await fetch(`${s.gateways[0]!.url}/health`)).json()) as { workers: { list: WorkerInfo[] } };
        const busy = h.workers.list.find((w) => w.state === 'BUSY' && w.job);
        const proc = busy && s.workers.find((p) => p.child.pid === Number(busy.id.split(':')[1]));
        if (busy && proc) {
          proc.child.kill('SIGKILL');
          killed = { worker: busy.id, job: busy.job! };
          return;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await Promise.all([...keys.flatMap((_, c) => Array.from({ length: 5 }, () => client(c))), killer]);

    assert.ok(killed, 'a busy worker was killed');
    const k = killed as { worker: string; job: string };
    const bad = results.filter((r) => r.status !== 200);
    assert.deepEqual(bad, [], 'every request answered 200');
    assert.equal(results.length, TOTAL);
    assert.equal(new Set(results.map((r) => r.id)).size, TOTAL, 'one request per call');

    // The database: 200 requests, all COMPLETED; the killed job ran again and finished once.
    const rows = await s.db.selectFrom('requests').select(['id', 'status', 'attempts', 'cost_micro', 'account_id']).execute();
    assert.equal(rows.length, TOTAL);
    assert.ok(rows.every((r) => r.status === 'COMPLETED'));
    const victim = rows.find((r) => r.id === k.job);
    assert.ok(victim, 'the killed job is a request of this run');
    assert.ok(victim.attempts >= 2, `the killed job was started again (attempts ${victim.attempts})`);

    // The money: one reserve and one settle per request, no release; charges = Σ x-cost.
    const ledger = await s.db.selectFrom('ledger').select(['request_id', 'kind', 'amount_micro']).where('request_id', 'is not', null).execute();
    const byRequest = new Map<string, string[]>();
    for (const e of ledger) byRequest.set(e.request_id!, [...(byRequest.get(e.request_id!) ?? []), e.kind]);
    assert.equal(byRequest.size, TOTAL);
    for (const [id, kinds] of byRequest) assert.deepEqual(kinds.sort(), ['reserve', 'settle'], `ledger of ${id}`);
    const charged = ledger.reduce((n, e) => n - Number(e.amount_micro), 0);
    const xCost = results.reduce((n, r) => n + (creditsToMicro(r.cost ?? '') ?? NaN), 0);
    assert.equal(charged, xCost, 'Σ charges = Σ x-cost');
    assert.equal(rows.reduce((n, r) => n + Number(r.cost_micro), 0), xCost);
    for (const acct of new Set(rows.map((r) => r.account_id))) {
      const b = await ledgerBalanced(s.db, acct);
      assert.equal(b.balance, b.sum, `account ${acct}: balance = Σ ledger`);
    }
    // The fleet sees the loss once the killed worker's heartbeat expires (10 s).
    type Fleet = { workers: { ready: number; lost: number; lost_ids: string[] } };
    const fleet = async () => (await (await fetch(`${s.gateways[1]!.url}/health`)).json()) as Fleet;
    let h = await fleet();
    for (let i = 0; i < 150 && h.workers.lost !== 1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      h = await fleet();
    }
    assert.equal(h.workers.lost, 1);
    assert.deepEqual(h.workers.lost_ids, [k.worker]);
    assert.equal(h.workers.ready, 2);
  });
});
