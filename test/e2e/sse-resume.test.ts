/**
 * Event streams that resume (contract §4, §9; issue 14 points 3 and 6), over real HTTP
 * against the embedded server (tiny engine, steps slowed by the engine's fault hook): a
 * client leaves mid-run and comes back with Last-Event-ID (the header, the query parameter,
 * sseclient-py) and gets every step once, in id order, then the terminal event; a stream
 * after the end is its terminal event; events_url's signed token stands for the key, and a
 * tampered or expired one is a 403.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/config.js';
import { LinkSigner } from '../../src/storage/signed-links.js';
import { assertResumed, follow, steps, type Ev } from './sse-follow.js';
import { FAST, startTestServer, type KeyInfo, type TestServer } from './harness.js';

type Json = Record<string, any>;

const SECRET = 'sse-resume-test-secret-0123456789abcdef';
const PYTHON = resolve(projectRoot(), '.test-services/clients/bin/python');
const SCRIPT = resolve(projectRoot(), 'test/clients/sse_resume.py');

async function submit(s: TestServer, key: string, body: Json): Promise<Json> {
  const r = await fetch(`${s.url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(body) });
  assert.equal(r.status, 200);
  return (await r.json()) as Json;
}

describe('event streams that resume (tiny engine)', () => {
  let s: TestServer;
  let key: KeyInfo;
  const signer = new LinkSigner([SECRET]);
  const eventsPath = (id: string) => `/v2/requests/${id}/events`;

  before(async () => {
    s = await startTestServer({ KLEIN_ENGINE_FAULTS: '1', KLEIN_LINK_SECRET: SECRET });
    key = s.createKey({ credits: '1000', rpm: 10_000, concurrency: 20 });
  });
  after(() => s?.close());

  it('Last-Event-ID mid-run: the missed steps, then live ones, once each, then the terminal event; after the end, the terminal event alone', async () => {
    const sub = await submit(s, key.key, { prompt: 'resumed [[fault:sleep:150]]', ...FAST, steps: 8 });
    const url = `${s.url}${eventsPath(sub.request_id)}`;
    // `Last-Event-ID: 0`: from the first step, however late this connection comes.
    const first = await follow(url, { 'x-api-key': key.key, 'last-event-id': '0' }, (seen) => steps(seen).length === 2);
    assert.deepEqual(steps(first), [1, 2]);
    // Away for a few steps: they are not lost.
    await new Promise((r) => setTimeout(r, 500));
    const second = await follow(url, { 'x-api-key': key.key, 'last-event-id': String(first.at(-1)!.id) });
    assert.ok(second[0]!.event === 'progress' && second[0]!.data.step === 3, `resumes at step 3: ${JSON.stringify(second[0])}`);
    assertResumed(first, second, 8);
    const terminal = second.at(-1)!;
    // Its record is GET /v2/requests/{id}'s: the output and events_url signed.
    assert.match(terminal.data.output, /\/output\?expires=\d+&sig=[\w-]{43}$/);
    assert.match(terminal.data.events_url, /\/events\?expires=\d+&sig=[\w-]{43}$/);
    assert.ok(terminal.id > Math.max(...first.concat(second).filter((e) => e.event !== terminal.event).map((e) => e.id)));

    // After the end: with the terminal's id, the terminal event alone (sent again, same id).
    const again = await follow(url, { 'x-api-key': key.key, 'last-event-id': String(terminal.id) });
    assert.deepEqual(again.map((e) => [e.id, e.event]), [[terminal.id, 'completed']]);
    assert.equal(again[0]!.data.status, 'COMPLETED');
    // Having missed the last steps and the end: they are replayed from the log, then the end.
    const step5 = second.find((e) => e.data.step === 5)!;
    const late = await follow(url, { 'x-api-key': key.key, 'last-event-id': String(step5.id) });
    assert.deepEqual(late.map((e) => e.id), second.filter((e) => e.id > step5.id).map((e) => e.id));
    // A fresh stream of a finished request is its terminal event alone, as before.
    assert.deepEqual((await follow(url, { 'x-api-key': key.key })).map((e) => e.event), ['completed']);
  });

  it('queued events are snapshots: a resumed stream does not repeat a position it saw; ids of queue, steps and end go up', async () => {
    const blocker = await submit(s, key.key, { prompt: 'blocker [[fault:sleep:250]]', ...FAST, steps: 4 });
    const sub = await submit(s, key.key, { prompt: 'waits', ...FAST, steps: 3 });
    const url = `${s.url}${eventsPath(sub.request_id)}`;
    const first = await follow(url, { 'x-api-key': key.key }, (seen) => seen.length === 1);
    assert.deepEqual([first[0]!.event, first[0]!.data.position], ['queued', 1]);
    const second = await follow(url, { 'x-api-key': key.key, 'last-event-id': String(first[0]!.id) });
    assert.ok(!second.some((e) => e.event === 'queued' && e.data.position === 1), 'position 1 is not sent again');
    assertResumed(first, second, 3);
    assert.ok(first[0]!.id < second.find((e) => e.event === 'progress')!.id);
    await follow(`${s.url}${eventsPath(blocker.request_id)}`, { 'x-api-key': key.key });
  });

  it('last_event_id in the query resumes a client that cannot send the header (the header wins over it)', async () => {
    const sub = await submit(s, key.key, { prompt: 'query [[fault:sleep:150]]', ...FAST, steps: 6 });
    const url = `${s.url}${eventsPath(sub.request_id)}`;
    const first = await follow(`${url}?last_event_id=0`, { 'x-api-key': key.key }, (seen) => steps(seen).length === 2);
    await new Promise((r) => setTimeout(r, 400));
    const second = await follow(`${url}?last_event_id=${first.at(-1)!.id}`, { 'x-api-key': key.key });
    assertResumed(first, second, 6);
    // Both: the header's id, not the query's, decides.
    const both = await follow(`${url}?last_event_id=${first.at(-1)!.id}`, { 'x-api-key': key.key, 'last-event-id': String(second.at(-1)!.id) });
    assert.deepEqual(both.map((e) => e.event), ['completed']);
  });

  it('the signed events_url token stands for the key; tampered, moved, half or expired links are 403 in the error envelope', async () => {
    const sub = await submit(s, key.key, { prompt: 'token [[fault:sleep:100]]', ...FAST, steps: 3 });
    const id = sub.request_id as string;
    const signed = `${s.url}${signer.sign(eventsPath(id), 60)}`;
    const evs = await follow(`${signed}&last_event_id=0`, {}, (seen) => steps(seen).length === 1);
    assert.equal(evs.at(-1)!.event, 'progress');
    // Resumed on the link, without a key, the browser's way (header on reconnect).
    const rest = await follow(`${signed}&preview=true`, { 'last-event-id': String(evs.at(-1)!.id) });
    assertResumed(evs, rest, 3);
    // The events_url the submit answer handed out works as it is, without the key.
    assert.match(sub.events_url, /\?expires=\d+&sig=/);
    assert.deepEqual((await follow(sub.events_url, {})).map((e) => e.event), ['completed']);

    const refused = async (url: string, headers: Record<string, string> = {}) => {
      const r = await fetch(url, { headers });
      const body = (await r.json()) as Json;
      return [r.status, body.code] as const;
    };
    const u = new URL(signed);
    const sig = u.searchParams.get('sig')!;
    const tampered = `${s.url}${eventsPath(id)}?expires=${u.searchParams.get('expires')}&sig=${sig.slice(0, -2)}${sig.endsWith('AA') ? 'BB' : 'AA'}`;
    assert.deepEqual(await refused(tampered), [403, 'invalid_link']);
    const longer = `${s.url}${eventsPath(id)}?expires=${Number(u.searchParams.get('expires')) + 3600}&sig=${sig}`;
    assert.deepEqual(await refused(longer), [403, 'invalid_link'], 'a link made to live longer');
    const other = await submit(s, key.key, { prompt: 'other', ...FAST });
    assert.deepEqual(await refused(`${s.url}${eventsPath(other.request_id)}?${u.searchParams}`), [403, 'invalid_link'], 'a link moved to another request');
    // A half link is refused even with a good key: it is checked, not ignored.
    assert.deepEqual(await refused(`${s.url}${eventsPath(id)}?sig=${sig}`, { 'x-api-key': key.key }), [403, 'invalid_link']);
    const expired = `${s.url}${signer.sign(eventsPath(id), 1, Date.now() - 60_000)}`;
    assert.deepEqual(await refused(expired), [403, 'link_expired']);
    // Neither key nor link.
    assert.deepEqual(await refused(`${s.url}${eventsPath(id)}`), [401, 'unauthorized']);
  });

  it('sseclient-py leaves after two steps and resumes with Last-Event-ID: no gap, no repeat, the terminal event', async () => {
    assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run node scripts/setup-test-services.mjs (npm test does)`);
    const sub = await submit(s, key.key, { prompt: 'python [[fault:sleep:150]]', ...FAST, steps: 8 });
    const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, s.url, key.key, sub.request_id], { env: { ...process.env, NO_PROXY: '*' }, timeout: 120_000 });
    const out = JSON.parse(stdout) as { first: Array<[string, string, Json]>; second: Array<[string, string, Json]> };
    const ev = ([id, event, data]: [string, string, Json]): Ev => ({ id: Number(id), event, data });
    assertResumed(out.first.map(ev), out.second.map(ev), 8);
  });
});
