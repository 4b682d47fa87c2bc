/**
 * Following a request's event stream in tests of resumption (sse-resume tests, embedded and
 * fleet): read it with the tests' parser (sse-parser.ts), leave when told, and check what
 * two connections saw together.
 */
import assert from 'node:assert/strict';
import { SseParser } from './sse-parser.js';

type Json = Record<string, any>;

export interface Ev {
  id: number;
  event: string;
  data: Json;
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/**
 * Follows a stream until `stop` says so (then leaves: the connection is closed) or the
 * server ends it. Returns the events read.
 */
export async function follow(url: string, headers: Record<string, string>, stop: (seen: Ev[]) => boolean = () => false): Promise<Ev[]> {
  const ctl = new AbortController();
  const r = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ctl.signal });
  assert.equal(r.status, 200, `${url}: ${r.status} ${r.status === 200 ? '' : await r.text()}`);
  const parser = new SseParser();
  const seen: Ev[] = [];
  const decoder = new TextDecoder();
  try {
    for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
      for (const e of parser.push(decoder.decode(chunk, { stream: true }))) {
        seen.push({ id: Number(e.id), event: e.event, data: JSON.parse(e.data) as Json });
        if (stop(seen)) {
          ctl.abort();
          return seen;
        }
      }
    }
  } catch (err) {
    if (!ctl.signal.aborted) throw err;
  }
  return seen;
}

/** The steps among `evs`, in order. */
export const steps = (evs: Ev[]): number[] => evs.filter((e) => e.event === 'progress').map((e) => e.data.step as number);

/** Across both connections: ids strictly increase, every step 1..n once, one terminal event, last and highest. */
export function assertResumed(first: Ev[], second: Ev[], total: number): void {
  const all = [...first, ...second];
  for (let i = 1; i < all.length; i++) assert.ok(all[i]!.id > all[i - 1]!.id, `ids go up: ${all.map((e) => `${e.id}:${e.event}`).join(' ')}`);
  assert.deepEqual(steps(all), Array.from({ length: total }, (_, i) => i + 1), 'every step once, in order');
  assert.deepEqual(all.filter((e) => TERMINAL.has(e.event)).map((e) => e.event), ['completed']);
  assert.equal(all.at(-1)!.event, 'completed');
  assert.ok(second.some((e) => e.event === 'progress'), 'the resumed stream has steps the first one did not');
}
