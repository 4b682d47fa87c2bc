/**
 * Links that work without the key (contract §9), end to end: the real server, the `tiny`
 * engine, real HTTP. A link from each place that hands one out (the v2 record's `output`,
 * an OpenAI `url` answer, a webhook payload) fetches the image with no key; a tampered,
 * moved, re-dated, malformed or expired link is a 403 in the §2 envelope; the secret kept
 * in the data directory survives a restart, and a rotated-out secret still verifies.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { LinkSigner } from '../../src/storage/signed-links.js';
import { eventsPath, outputPath } from '../../src/storage/request-links.js';
import { FAST, startTestServer, type KeyInfo, type TestServer } from './harness.js';

type Json = Record<string, any>;

async function submit(s: TestServer, key: string, body: Json): Promise<Json> {
  const r = await fetch(`${s.url}/v2/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(body) });
  assert.equal(r.status, 200);
  return (await r.json()) as Json;
}

async function record(s: TestServer, key: string, id: string, timeoutMs = 60_000): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rec = (await (await fetch(`${s.url}/v2/requests/${id}`, { headers: { 'x-api-key': key } })).json()) as Json;
    if (rec.status === 'COMPLETED') return rec;
    if (['FAILED', 'CANCELLED'].includes(rec.status) || Date.now() > deadline) throw new Error(`${id}: ${JSON.stringify(rec)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** GET with no key; the status and, for an image, its format, else the error body. */
async function fetchNoKey(url: string): Promise<{ status: number; format?: string; body?: Json; requestId?: string | null }> {
  const r = await fetch(url);
  if (r.status === 200) return { status: 200, format: (await sharp(Buffer.from(await r.arrayBuffer())).metadata()).format };
  return { status: r.status, body: (await r.json()) as Json, requestId: r.headers.get('x-request-id') };
}

/** The error code of a refused link, after checking the §2 envelope around it. */
async function refused(url: string, status: number): Promise<string> {
  const r = await fetchNoKey(url);
  assert.equal(r.status, status, `${url}: ${JSON.stringify(r.body)}`);
  assert.deepEqual(Object.keys(r.body!).sort(), ['code', 'error', 'request_id']);
  assert.equal(r.body!.request_id, r.requestId);
  assert.ok(String(r.body!.error).length > 0);
  return r.body!.code as string;
}

/** The same link on another host: only the path is signed (a restarted server listens on a new port). */
const onServer = (s: TestServer, url: string) => {
  const u = new URL(url);
  return `${s.url}${u.pathname}${u.search}`;
};

const withParam = (url: string, name: string, value: string) => {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return u.href;
};

describe('key-less signed links (tiny engine)', () => {
  let s: TestServer;
  let key: KeyInfo;
  let receiver: Server;
  let hookUrl = '';
  const hooks: string[] = [];
  let first: { id: string; output: string };

  before(async () => {
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        hooks.push(body);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    // No KLEIN_LINK_SECRET: the server makes one and keeps it in the data directory.
    s = await startTestServer({ KLEIN_ALLOW_NETWORKS: '127.0.0.1/32' }, { keepDataDir: true });
    key = s.createKey({ credits: '100', concurrency: 8 });
  });

  after(async () => {
    await s?.close();
    receiver?.close();
    if (s) rmSync(s.dataDir, { recursive: true, force: true });
  });

  const secret = () => readFileSync(join(s.dataDir, 'link-secret'), 'utf8').trim();

  it('the record\'s output and the webhook\'s fetch the image with no key; every events_url carries a token', async () => {
    const sub = await submit(s, key.key, { prompt: 'a lighthouse', ...FAST, webhook_url: hookUrl });
    const signer = new LinkSigner([secret()]);
    const token = (url: string) => new URL(url).searchParams;
    const submittedEvents = token(sub.events_url);
    assert.equal(new URL(sub.events_url).pathname, eventsPath(sub.request_id));
    assert.equal(signer.check(eventsPath(sub.request_id), submittedEvents.get('expires') ?? undefined, submittedEvents.get('sig') ?? undefined), 'valid');
    const expiresIn = Number(submittedEvents.get('expires')) - Date.now() / 1000;
    assert.ok(expiresIn > 890 && expiresIn <= 900, `events token lives KLEIN_EVENTS_LINK_TTL (900 s), got ${expiresIn}`);
    // output_url stays the stable keyed route.
    assert.equal(sub.output_url, `${s.url}${outputPath(sub.request_id)}`);
    assert.equal((await fetch(sub.output_url)).status, 401);

    const rec = await record(s, key.key, sub.request_id);
    assert.match(rec.output, /\/v2\/requests\/[^/]+\/output\?expires=\d+&sig=[\w-]{43}$/);
    const outLife = Number(token(rec.output).get('expires')) - Date.now() / 1000;
    assert.ok(outLife > 3590 && outLife <= 3600, `output link lives KLEIN_LINK_TTL (3600 s), got ${outLife}`);
    assert.deepEqual(await fetchNoKey(rec.output), { status: 200, format: 'png' });
    const recEvents = token(rec.events_url);
    assert.equal(signer.check(eventsPath(sub.request_id), recEvents.get('expires') ?? undefined, recEvents.get('sig') ?? undefined), 'valid');
    // The key alone still works, as before.
    assert.equal((await fetch(sub.output_url, { headers: { 'x-api-key': key.key } })).status, 200);

    const deadline = Date.now() + 30_000;
    while (hooks.length === 0) {
      if (Date.now() > deadline) throw new Error('no webhook arrived');
      await new Promise((r) => setTimeout(r, 50));
    }
    const ev = JSON.parse(hooks[0]!) as Json;
    assert.equal(ev.data.request_id, sub.request_id);
    assert.match(ev.data.output, /\?expires=\d+&sig=/);
    assert.deepEqual(await fetchNoKey(ev.data.output), { status: 200, format: 'png' });
    assert.match(ev.data.events_url, /\/events\?expires=\d+&sig=/);
    first = { id: sub.request_id, output: rec.output };
  });

  it('an OpenAI `url` answer fetches the image with no key', async () => {
    const r = await fetch(`${s.url}/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key.key}` },
      body: JSON.stringify({ prompt: 'a kite', size: '64x64', response_format: 'url', output_format: 'webp', steps: 1, cfg: 1 }),
    });
    assert.equal(r.status, 200);
    const url = ((await r.json()) as Json).data[0].url as string;
    assert.match(url, /\/output\?expires=\d+&sig=/);
    assert.deepEqual(await fetchNoKey(url), { status: 200, format: 'webp' });
  });

  it('refuses tampered, moved, re-dated, malformed and expired links with a 403 in the envelope; no key nor link is a 401', async () => {
    const other = await submit(s, key.key, { prompt: 'another', ...FAST });
    await record(s, key.key, other.request_id);
    const u = new URL(first.output);
    const sig = u.searchParams.get('sig')!;
    const flipped = `${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
    assert.equal(await refused(withParam(first.output, 'sig', flipped), 403), 'invalid_link');
    assert.equal(await refused(first.output.replace(first.id, other.request_id), 403), 'invalid_link');
    assert.equal(await refused(withParam(first.output, 'expires', String(Number(u.searchParams.get('expires')) + 86_400)), 403), 'invalid_link');
    assert.equal(await refused(withParam(first.output, 'expires', 'soon'), 403), 'invalid_link');
    assert.equal(await refused(`${s.url}${outputPath(first.id)}?sig=${sig}`, 403), 'invalid_link');
    // Signed with the server's own secret, an hour ago, for a minute: expired, and told so.
    const stale = new LinkSigner([secret()]).sign(outputPath(first.id), 60, Date.now() - 3_600_000);
    assert.equal(await refused(`${s.url}${stale}`, 403), 'link_expired');
    assert.equal(await refused(`${s.url}${outputPath(first.id)}`, 401), 'unauthorized');
    // A valid signature for a request that no longer exists (swept, or never was): 404.
    const gone = new LinkSigner([secret()]).sign(outputPath('req_swept'), 60);
    assert.equal(await refused(`${s.url}${gone}`, 404), 'not_found');
    // A query parameter of the client's own does not break the link.
    assert.equal((await fetchNoKey(withParam(first.output, 'download', '1'))).status, 200);
  });

  it('documents the output route as taking the key or a signed link', async () => {
    const doc = (await (await fetch(`${s.url}/openapi.json`)).json()) as Json;
    const op = doc.paths['/v2/requests/{id}/output'].get;
    assert.deepEqual(op.security, [{ ApiKey: [] }, { Bearer: [] }, {}]);
    const query = (op.parameters as Json[]).filter((p) => p.in === 'query').map((p) => p.name);
    assert.deepEqual(query.sort(), ['expires', 'sig']);
    assert.equal(op.responses['403'].description, 'forbidden, invalid_link, link_expired');
  });

  it('keeps links valid across a restart (the secret in the data directory), and through a rotation', async () => {
    const kept = secret();
    assert.equal(statSync(join(s.dataDir, 'link-secret')).mode & 0o777, 0o600);
    await s.close();
    s = await startTestServer({ KLEIN_DATA_DIR: s.dataDir }, { keepDataDir: true });
    assert.equal(secret(), kept);
    assert.deepEqual(await fetchNoKey(onServer(s, first.output)), { status: 200, format: 'png' });

    // Rotation: the new secret signs, the old one still verifies.
    const fresh = 'n'.repeat(43);
    await s.close();
    s = await startTestServer({ KLEIN_DATA_DIR: s.dataDir, KLEIN_LINK_SECRET: `${fresh},${kept}` }, { keepDataDir: true });
    assert.deepEqual(await fetchNoKey(onServer(s, first.output)), { status: 200, format: 'png' });
    const rec = (await (await fetch(`${s.url}/v2/requests/${first.id}`, { headers: { 'x-api-key': key.key } })).json()) as Json;
    const q = new URL(rec.output).searchParams;
    assert.equal(new LinkSigner([fresh]).check(outputPath(first.id), q.get('expires') ?? undefined, q.get('sig') ?? undefined), 'valid');
    assert.deepEqual(await fetchNoKey(rec.output), { status: 200, format: 'png' });
    // Once the old secret is dropped, its links stop working.
    await s.close();
    s = await startTestServer({ KLEIN_DATA_DIR: s.dataDir, KLEIN_LINK_SECRET: fresh }, { keepDataDir: true });
    assert.equal(await refused(onServer(s, first.output), 403), 'invalid_link');
  });
});
