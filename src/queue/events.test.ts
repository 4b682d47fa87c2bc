/** The event ids of a request's stream and the JobBus's step log (events.ts). */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { EVENT_LOG_MAX, JobBus, eventIds, type ProgressEvent } from './events.js';

it('orders a life with a requeue: queue moving up, run 1 steps, queued again, run 2 steps, then the end', () => {
  // Cancelled while queued for run 1 (attempts 0), completed after run 1, after run 2.
  const life = [
    eventIds.queued(1, 5000),
    eventIds.queued(1, 3),
    eventIds.queued(1, 1),
    ...[1, 2, 3].map((s) => eventIds.progress(1, s)),
    // The worker died; the row went back to QUEUED with attempts 1: it waits for run 2.
    eventIds.queued(2, 2),
    eventIds.queued(2, 1),
    ...Array.from({ length: 100 }, (_, i) => eventIds.progress(2, i + 1)),
    eventIds.terminal(2),
  ];
  for (let i = 1; i < life.length; i++) assert.ok(life[i]! > life[i - 1]!, `${life[i - 1]} then ${life[i]}`);
  assert.ok(eventIds.terminal(0) > eventIds.queued(1, 1), 'cancelled while queued for run 1');
  assert.ok(eventIds.terminal(1) > eventIds.progress(1, 100));
  assert.ok(eventIds.terminal(1) > eventIds.queued(2, 1), 'cancelled while queued again for run 2');
  assert.equal(eventIds.queued(1, 3), eventIds.queued(1, 3), 'a position has one id');
  assert.equal(eventIds.runOf(eventIds.progress(7, 100)), 7);
  assert.equal(eventIds.runOf(eventIds.queued(7, 10 ** 9)), 7, 'a huge position stays in its run');
});

it('logs each stamped step (no preview) before it is emitted, bounded to the newest EVENT_LOG_MAX', () => {
  const bus = new JobBus();
  const seen: Array<[number, number]> = [];
  bus.onProgress('r', (ev) => seen.push([ev.step, bus.history('r').length]));
  bus.progress('r', { step: 1, total: 3, attempt: 2, preview: { width: 1, height: 1, data: Buffer.alloc(3) } });
  bus.progress('r', { step: 2, total: 3, attempt: 2 });
  assert.deepEqual(seen, [[1, 1], [2, 2]], 'in the log when the listener hears it');
  assert.deepEqual(bus.history('r'), [{ step: 1, total: 3, attempt: 2 }, { step: 2, total: 3, attempt: 2 }]);
  for (let i = 0; i < EVENT_LOG_MAX + 10; i++) bus.progress('long', { step: 1 + (i % 100), total: 100, attempt: 1 + Math.floor(i / 100) });
  const h = bus.history('long');
  assert.equal(h.length, EVENT_LOG_MAX);
  assert.deepEqual(h.at(-1), { step: 10, total: 100, attempt: 6 });
  // An unstamped step is emitted but not logged: it has no id.
  const ev: ProgressEvent = { step: 1, total: 1 };
  bus.progress('bare', ev);
  assert.deepEqual(bus.history('bare'), []);
  assert.deepEqual(bus.history('nobody'), []);
});
