/**
 * The asynchronous API end to end: the real server, the real `tiny` engine, real HTTP
 * (issue: asynchronous requests, "What must be shown").
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { verify } from '../../src/webhooks/sign.js';
import { FAST, klein, startTestServer, waitReady, type KeyInfo, type TestServer } from './harness.js';

type Json = Record<string, any>;

async function submit(s: TestServer, key: string, body: Json, headers: Record<string, string> = {}): Promise<{ status: number; json: Json }> {
  const r = await fetch(`${s.url}/v2/flux-2-klein-4b`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key, ...headers },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: (await r.json()) as Json };
}

async function get(s: TestServer, key: string, path: string): Promise<{ status: number; json: Json }> {
  const r = await fetch(`${s.url}${path}`, { headers: { 'x-api-key': key } });
  return { status: r.status, json: (await r.json()) as Json };
}

async function waitStatus(s: TestServer, key: string, id: string, want: string[], timeoutMs = 60_000): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { json } = await get(s, key, `/v2/requests/${id}/status`);
    if (want.includes(json.status)) return json;
    if (Date.now() > deadline) throw new Error(`${id} still ${json.status}: ${JSON.stringify(json)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function credits(s: TestServer, key: string): Promise<number> {
  return Number((await get(s, key, '/v1/get-user-credits')).json.credits);
}

/** Reads an SSE stream to its end; returns the events. */
async function readEvents(url: string, key: string): Promise<Array<{ event: string; data: Json }>> {
  const r = await fetch(url, { headers: { 'x-api-key': key, accept: 'text/event-stream' } });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
  const text = await r.text();
  return text
    .split('\n\n')
    .filter((b) => b.includes('event: '))
    .map((b) => ({ event: /event: (\S+)/.exec(b)![1]!, data: JSON.parse(/data: (.*)/.exec(b)![1]!) as Json }));
}

interface Hook {
  headers: IncomingMessage['headers'];
  body: string;
  at: number;
}

describe('asynchronous API (tiny engine)', () => {
  let s: TestServer;
  let key: KeyInfo;
  let receiver: Server;
  let hookUrl = '';
  const hooks = new Map<string, Hook[]>();
  const plan = new Map<string, number[]>(); // path → status codes to answer, in order

  before(async () => {
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const path = req.url ?? '/';
        if (path.startsWith('/hang')) return; // never answers
        const list = hooks.get(path) ?? [];
        list.push({ headers: req.headers, body, at: Date.now() });
        hooks.set(path, list);
        const codes = plan.get(path) ?? [];
        res.writeHead(codes.shift() ?? 200);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    s = await startTestServer({
      KLEIN_ENGINE_FAULTS: '1',
      KLEIN_ALLOW_NETWORKS: '127.0.0.1/32',
      KLEIN_WEBHOOK_BACKOFF_MS: '100',
      KLEIN_WEBHOOK_TIMEOUT_MS: '1000',
    });
    key = s.createKey({ credits: '1000', rpm: 10_000, concurrency: 50 });
  });

  after(async () => {
    await s?.close();
    receiver?.close();
  });

  it('submits, polls to COMPLETED and fetches the output; the record has input, metrics and links', async () => {
    const sub = await submit(s, key.key, { prompt: 'a harbour', ...FAST, seed: 9 });
    assert.equal(sub.status, 200);
    assert.equal(sub.json.status, 'QUEUED');
    for (const u of ['status_url', 'response_url', 'cancel_url', 'events_url']) assert.match(sub.json[u], /^http:\/\/127\.0\.0\.1:\d+\/v2\/requests\//, u);
    const st = await waitStatus(s, key.key, sub.json.request_id, ['COMPLETED']);
    assert.deepEqual(st.progress, { step: 2, total: 2 });
    const rec = (await get(s, key.key, `/v2/requests/${sub.json.request_id}`)).json;
    assert.equal(rec.input.prompt, 'a harbour');
    assert.equal(rec.input.seed, 9);
    assert.ok(rec.metrics.cost > 0 && rec.metrics.total_time >= 0 && rec.metrics.queue_time >= 0);
    const out = await fetch(rec.output, { headers: { 'x-api-key': key.key } });
    assert.equal(out.status, 200);
    const meta = await sharp(Buffer.from(await out.arrayBuffer())).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 64, 64]);
    const b64 = (await get(s, key.key, `/v2/requests/${sub.json.request_id}?base64=true`)).json;
    assert.equal((await sharp(Buffer.from(b64.output, 'base64')).metadata()).width, 64);
  });

  it('hides other accounts\' requests (404)', async () => {
    const sub = await submit(s, key.key, { prompt: 'mine', ...FAST });
    const other = s.createKey({ credits: '1' });
    for (const p of ['', '/status', '/output', '/events']) assert.equal((await fetch(`${s.url}/v2/requests/${sub.json.request_id}${p}`, { headers: { 'x-api-key': other.key } })).status, 404, p);
    assert.equal((await fetch(`${s.url}/v2/requests/${sub.json.request_id}/cancel`, { method: 'POST', headers: { 'x-api-key': other.key } })).status, 404);
    await waitStatus(s, key.key, sub.json.request_id, ['COMPLETED']);
  });

  it('counts queue_position down, and cancels queued and running requests without charging', async () => {
    const k = s.createKey({ credits: '100', concurrency: 10 });
    const before = await credits(s, k.key);
    const slow = await submit(s, k.key, { prompt: 'slow [[fault:sleep:300]]', ...FAST, steps: 20 }); // 6 s if not cancelled
    await waitStatus(s, k.key, slow.json.request_id, ['PROCESSING']);
    const queued = [];
    for (let i = 0; i < 3; i++) queued.push((await submit(s, k.key, { prompt: `q${i} [[fault:sleep:100]]`, ...FAST, steps: 3 })).json.request_id);
    const positions = await Promise.all(queued.map(async (id) => (await get(s, k.key, `/v2/requests/${id}/status`)).json.queue_position));
    assert.deepEqual(positions, [1, 2, 3]);
    // Cancel the second while queued.
    const c1 = await fetch(`${s.url}/v2/requests/${queued[1]}/cancel`, { method: 'POST', headers: { 'x-api-key': k.key } });
    assert.equal(((await c1.json()) as Json).status, 'CANCELLED');
    assert.equal((await get(s, k.key, `/v2/requests/${queued[2]}/status`)).json.queue_position, 2);
    // Cancel the running one: it stops within about one step and the next starts.
    const t0 = Date.now();
    const c2 = (await (await fetch(`${s.url}/v2/requests/${slow.json.request_id}/cancel`, { method: 'POST', headers: { 'x-api-key': k.key } })).json()) as Json;
    assert.equal(c2.status, 'CANCELLED');
    assert.ok(Date.now() - t0 < 2500, `cancel took ${Date.now() - t0} ms`);
    await waitStatus(s, k.key, queued[0]!, ['PROCESSING', 'COMPLETED'], 4000);
    for (const id of [queued[0]!, queued[2]!]) await waitStatus(s, k.key, id, ['COMPLETED']);
    const costs = await Promise.all([queued[0], queued[2]].map(async (id) => (await get(s, k.key, `/v2/requests/${id}`)).json.metrics.cost as number));
    const spent = Math.round((before - (await credits(s, k.key))) * 1e6);
    assert.equal(spent, Math.round((costs[0]! + costs[1]!) * 1e6), 'only the two completed requests are charged');
  });

  it('streams queued, one progress per step in order, then one terminal event; previews decode', async () => {
    const blocker = await submit(s, key.key, { prompt: 'blocker [[fault:sleep:200]]', ...FAST, steps: 3 });
    const sub = await submit(s, key.key, { prompt: 'streamed', ...FAST, steps: 4 });
    // events_url carries its own query (a signed token, contract §9): add to it, do not append a second '?'.
    const withPreview = new URL(sub.json.events_url);
    withPreview.searchParams.set('preview', 'true');
    const events = await readEvents(withPreview.href, key.key);
    const names = events.map((e) => e.event);
    assert.equal(names[0], 'queued');
    assert.equal(events[0]!.data.position, 1);
    const steps = events.filter((e) => e.event === 'progress').map((e) => e.data.step);
    assert.deepEqual(steps, [1, 2, 3, 4]);
    assert.equal(names.filter((n) => ['completed', 'failed', 'cancelled'].includes(n)).length, 1);
    assert.equal(names.at(-1), 'completed');
    const pv = events.find((e) => e.event === 'progress')!.data.preview;
    const meta = await sharp(Buffer.from(pv.png_base64, 'base64')).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', pv.width, pv.height]);
    // A finished request's stream is just its terminal event.
    const again = await readEvents(sub.json.events_url, key.key);
    assert.deepEqual(again.map((e) => e.event), ['completed']);
    await waitStatus(s, key.key, blocker.json.request_id, ['COMPLETED']);
  });

  it('Idempotency-Key: three posts (sequential and concurrent) give one request and one charge; another body is 422', async () => {
    const k = s.createKey({ credits: '100' });
    const before = await credits(s, k.key);
    const body = { prompt: 'only once', ...FAST };
    const h = { 'idempotency-key': 'order-42' };
    const first = await submit(s, k.key, body, h);
    const [a, b] = await Promise.all([submit(s, k.key, body, h), submit(s, k.key, body, h)]);
    assert.equal(a.json.request_id, first.json.request_id);
    assert.equal(b.json.request_id, first.json.request_id);
    const conc = await Promise.all([1, 2, 3].map(() => submit(s, k.key, { prompt: 'racing', ...FAST }, { 'idempotency-key': 'race-1' })));
    assert.equal(new Set(conc.map((c) => c.json.request_id)).size, 1);
    const other = await submit(s, k.key, { ...body, seed: 5 }, h);
    assert.equal(other.status, 422);
    assert.equal(other.json.code, 'idempotency_conflict');
    await waitStatus(s, k.key, first.json.request_id, ['COMPLETED']);
    await waitStatus(s, k.key, conc[0]!.json.request_id, ['COMPLETED']);
    const c1 = (await get(s, k.key, `/v2/requests/${first.json.request_id}`)).json.metrics.cost as number;
    const c2 = (await get(s, k.key, `/v2/requests/${conc[0]!.json.request_id}`)).json.metrics.cost as number;
    assert.equal(Math.round((before - (await credits(s, k.key))) * 1e6), Math.round((c1 + c2) * 1e6));
    // v1 too: the replay answers the same image, charged once.
    const v1 = async () =>
      fetch(`${s.url}/v1/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': k.key, 'idempotency-key': 'v1-a' }, body: JSON.stringify(body) });
    const r1 = await v1();
    const mid = await credits(s, k.key);
    const r2 = await v1();
    assert.equal(r1.status, 200);
    assert.equal(r2.status, 200);
    assert.ok(Buffer.from(await r1.arrayBuffer()).equals(Buffer.from(await r2.arrayBuffer())));
    assert.equal(r2.headers.get('x-request-id'), r1.headers.get('x-request-id'));
    assert.equal(await credits(s, k.key), mid);
  });

  it('webhooks: signed, retried after 500s (exactly three attempts), sent for failures too, never blocked by a hanging receiver', async () => {
    const k = s.createKey({ credits: '100', concurrency: 10 });
    plan.set('/retry', [500, 500, 200]);
    const ok = await submit(s, k.key, { prompt: 'hooked', ...FAST, webhook_url: `${hookUrl}/retry` });
    const hang = await submit(s, k.key, { prompt: 'hangs', ...FAST, webhook_url: `${hookUrl}/hang` });
    const failed = await submit(s, k.key, { prompt: 'boom [[fault:internal]]', ...FAST, webhook_url: `${hookUrl}/failed` });
    const deadline = Date.now() + 30_000;
    while ((hooks.get('/retry')?.length ?? 0) < 3 || !hooks.get('/failed')) {
      if (Date.now() > deadline) throw new Error('webhooks did not arrive');
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 600)); // a fourth attempt would come within this
    const retry = hooks.get('/retry')!;
    assert.equal(retry.length, 3, 'exactly three attempts');
    const secret = k.webhook_secret as string;
    for (const h of retry) assert.ok(verify(secret, h.headers as Record<string, string>, h.body), 'signature verifies');
    assert.equal(new Set(retry.map((h) => h.headers['webhook-id'])).size, 1, 'one message id across retries');
    assert.ok(!verify('whsec_' + Buffer.from('wrong').toString('base64'), retry[0]!.headers as Record<string, string>, retry[0]!.body));
    const ev = JSON.parse(retry[2]!.body) as Json;
    assert.equal(ev.type, 'request.completed');
    assert.equal(ev.data.request_id, ok.json.request_id);
    const f = JSON.parse(hooks.get('/failed')![0]!.body) as Json;
    assert.equal(f.type, 'request.failed');
    assert.equal(f.data.request_id, failed.json.request_id);
    assert.equal(f.data.error.code, 'engine_failed');
    // The hanging receiver held no one up: its request completed like the others.
    assert.equal((await get(s, k.key, `/v2/requests/${hang.json.request_id}/status`)).json.status, 'COMPLETED');
  });

  it('fails a request that keeps crashing its engine after the set attempts, releasing its credits', async () => {
    const k = s.createKey({ credits: '10' });
    const sub = await submit(s, k.key, { prompt: 'crash [[fault:crash]]', ...FAST });
    const st = await waitStatus(s, k.key, sub.json.request_id, ['FAILED'], 120_000);
    assert.equal(st.status, 'FAILED');
    const rec = (await get(s, k.key, `/v2/requests/${sub.json.request_id}`)).json;
    assert.equal(rec.error.code, 'engine_failed');
    assert.equal(await credits(s, k.key), 10);
    await waitReady(s.url, 120_000, true);
    const after = await submit(s, k.key, { prompt: 'fine', ...FAST });
    assert.equal(after.status, 200);
    await waitStatus(s, k.key, after.json.request_id, ['COMPLETED'], 120_000);
  });

  it('refuses a webhook_url that points at a blocked address', async () => {
    const r = await submit(s, key.key, { prompt: 'x', ...FAST, webhook_url: 'http://169.254.169.254/hook' });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'url_blocked');
  });
});

describe('durability and retention', () => {
  it('resumes queued requests after a restart; each completes once and the ledger is exact', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'klein-restart-'));
    try {
      const env = { KLEIN_ENGINE_FAULTS: '1', KLEIN_DATA_DIR: dataDir };
      let s = await startTestServer(env, { keepDataDir: true });
      const k = s.createKey({ credits: '100', concurrency: 20 });
      const start = await credits(s, k.key);
      const ids: string[] = [];
      ids.push((await submit(s, k.key, { prompt: 'long [[fault:sleep:300]]', ...FAST, steps: 4 })).json.request_id);
      const ref = `data:image/png;base64,${(await sharp({ create: { width: 96, height: 64, channels: 3, background: '#abcdef' } }).png().toBuffer()).toString('base64')}`;
      for (let i = 0; i < 3; i++) ids.push((await submit(s, k.key, { prompt: `queued ${i}`, ...FAST, image_urls: i === 0 ? [ref] : [] })).json.request_id);
      await s.close();
      s = await startTestServer(env, { keepDataDir: true });
      try {
        for (const id of ids) await waitStatus(s, k.key, id, ['COMPLETED'], 120_000);
        let total = 0;
        for (const id of ids) total += (await get(s, k.key, `/v2/requests/${id}`)).json.metrics.cost as number;
        assert.equal(Math.round((start - (await credits(s, k.key))) * 1e6), Math.round(total * 1e6));
        const usage = JSON.parse(klein(['usage', k.account_id, '--json'], s.env).stdout) as Json;
        assert.equal(usage.requests.COMPLETED, 4);
      } finally {
        await s.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('expires records and outputs after KLEIN_RETENTION: the id becomes a 404 and the file is removed', async () => {
    // Long enough for the request to complete on a busy machine; then the expiry is awaited,
    // not slept for, since the sweeper runs every second.
    const s = await startTestServer({ KLEIN_RETENTION: '8s' });
    try {
      const k = s.createKey({ credits: '10' });
      const sub = await submit(s, k.key, { prompt: 'short-lived', ...FAST });
      const id = sub.json.request_id as string;
      await waitStatus(s, k.key, id, ['COMPLETED']);
      const outputs = join(s.dataDir, 'objects', 'outputs');
      assert.deepEqual(readdirSync(outputs), [`${id}.png`]);
      const expires = Date.parse((await get(s, k.key, `/v2/requests/${id}`)).json.expires_at as string);
      while ((await get(s, k.key, `/v2/requests/${id}`)).status !== 404) {
        assert.ok(Date.now() < expires + 60_000, 'the record outlived its expiry by a minute');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(Date.now() >= expires, 'not gone before its expires_at');
      for (let i = 0; existsSync(join(outputs, `${id}.png`)); i++) {
        assert.ok(i < 600, 'the sweeper removed the output');
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await s.close();
    }
  });
});
