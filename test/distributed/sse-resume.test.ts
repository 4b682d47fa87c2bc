/**
 * Event streams that resume across a fleet (contract §4, §9; issue 14 point 3), on real
 * PostgreSQL and Redis: a client that follows a request on one gateway and comes back with
 * Last-Event-ID on another gets the steps it missed (from the workers' log in Redis), then
 * the live ones, once each; and when the worker running the request is killed and another
 * runs it again, the new run's steps carry higher ids than any the client saw, so a resumed
 * stream shows the whole new run, not the part past the old step number.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startStack, type Stack } from './stack.js';
import { eventIds } from '../../src/queue/events.js';
import { assertResumed, follow, steps } from '../e2e/sse-follow.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function submit(url: string, key: string, body: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { request_id: string }).request_id;
}

describe('fleet: event streams resume on another gateway and across a requeue', () => {
  let s: Stack;
  let key: string;
  before(async () => {
    s = await startStack({ model: 'simulated:20', env: { KLEIN_ENGINE_FAULTS: '1' } });
    await s.startFleet(2, 2);
    key = await s.key();
  });
  after(async () => s?.stop());

  it('left on gateway 1 after two steps, resumed with Last-Event-ID on gateway 2: no gap, no repeat, the terminal event', async () => {
    const [a, b] = [s.gateways[0]!.url, s.gateways[1]!.url];
    const id = await submit(a, key, { prompt: 'across [[fault:sleep:120]]', width: 64, height: 64, steps: 10, cfg: 1 });
    const first = await follow(`${a}/v2/requests/${id}/events`, { 'x-api-key': key, 'last-event-id': '0' }, (seen) => steps(seen).length === 2);
    await sleep(500);
    const second = await follow(`${b}/v2/requests/${id}/events`, { 'x-api-key': key, 'last-event-id': String(first.at(-1)!.id) });
    assert.equal(second[0]!.data.step, 3, `resumes at step 3 on the other gateway: ${JSON.stringify(second[0])}`);
    assertResumed(first, second, 10);
  });

  it('a worker killed mid-run: the requeued run\'s steps outrank the dead one\'s, and a resumed stream shows them all', async () => {
    const [a, b] = [s.gateways[0]!.url, s.gateways[1]!.url];
    const id = await submit(a, key, { prompt: 'survives [[fault:sleep:100]]', width: 64, height: 64, steps: 20, cfg: 1 });
    const first = await follow(`${a}/v2/requests/${id}/events`, { 'x-api-key': key, 'last-event-id': '0' }, (seen) => steps(seen).length === 3);
    const row = await s.db.selectFrom('requests').select(['worker_id', 'attempts']).where('id', '=', id).executeTakeFirstOrThrow();
    assert.equal(row.attempts, 1);
    const victim = s.workers.find((p) => row.worker_id?.split(':')[1] === String(p.child.pid));
    assert.ok(victim, `worker ${row.worker_id} is one of the stack's`);
    victim.child.kill('SIGKILL');
    const second = await follow(`${b}/v2/requests/${id}/events`, { 'x-api-key': key, 'last-event-id': String(first.at(-1)!.id) });
    const all = [...first, ...second];
    for (let i = 1; i < all.length; i++) assert.ok(all[i]!.id > all[i - 1]!.id, `ids go up: ${all.map((e) => `${e.id}:${e.event}`).join(' ')}`);
    assert.equal(all.at(-1)!.event, 'completed');
    const final = await s.db.selectFrom('requests').select(['attempts']).where('id', '=', id).executeTakeFirstOrThrow();
    assert.ok(final.attempts >= 2, `run again (attempts ${final.attempts})`);
    assert.equal(all.at(-1)!.id, eventIds.terminal(final.attempts));
    // The first run's steps, as far as it got, once each; the last run's, all of them.
    const ofRun = (n: number) => all.filter((e) => e.event === 'progress' && eventIds.runOf(e.id) === n).map((e) => e.data.step as number);
    const run1 = ofRun(1);
    assert.deepEqual(run1, Array.from({ length: run1.length }, (_, i) => i + 1), `run 1: ${run1.join(',')}`);
    assert.ok(run1.length >= 3 && run1.length < 20);
    assert.deepEqual(ofRun(final.attempts), Array.from({ length: 20 }, (_, i) => i + 1), 'the run that completed, every step');
  });
});
