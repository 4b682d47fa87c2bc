/**
 * Our webhooks against the Standard Webhooks reference library (`standardwebhooks` for
 * Python, pinned in test/clients/requirements.txt, installed into .test-services/clients/
 * by scripts/setup-test-services.mjs): a real HTTP receiver gets the terminal event of a
 * completed, a failed and a cancelled request, and test/clients/webhook_verify.py checks
 * each exactly as received (raw body bytes, raw header lines) with the account's secret
 * (contract §4). The library must accept each, and refuse it with one byte of the body
 * changed, replayed past its 5-minute tolerance, restamped, or under another secret.
 * (The npm `standardwebhooks` package is not a dependency here, so only the Python one runs.)
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/config.js';
import { FAST, startTestServer, type KeyInfo, type TestServer } from './harness.js';

const PYTHON = resolve(projectRoot(), '.test-services/clients/bin/python');
const SCRIPT = resolve(projectRoot(), 'test/clients/webhook_verify.py');

interface Received {
  name: string;
  body: Buffer;
  rawHeaders: string[];
}

type Outcome = { ok: { type: string; timestamp: string; data: Record<string, unknown> } } | { error: string };
type Verdicts = Record<'as_received' | 'tampered_body' | 'replayed_later' | 'restamped' | 'other_secret', Outcome>;

describe('webhooks verified by the Standard Webhooks reference library', () => {
  let s: TestServer;
  let key: KeyInfo;
  let receiver: Server;
  let hookUrl = '';
  let dir = '';
  const received = new Map<string, Received>();

  before(async () => {
    assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run node scripts/setup-test-services.mjs (npm test does)`);
    // Keeps the body as bytes and the header lines as sent, so the verifier sees what a receiver would.
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const name = (req.url ?? '/').slice(1);
        if (!received.has(name)) received.set(name, { name, body: Buffer.concat(chunks), rawHeaders: req.rawHeaders });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    s = await startTestServer({ KLEIN_ENGINE_FAULTS: '1', KLEIN_ALLOW_NETWORKS: '127.0.0.1/32', KLEIN_WEBHOOK_BACKOFF_MS: '100' });
    key = s.createKey({ credits: '100', concurrency: 4 });
    dir = mkdtempSync(join(tmpdir(), 'std-webhooks-'));
  });
  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await s?.close();
    receiver?.close();
  });

  async function submit(prompt: string, hook: string, extra: Record<string, unknown> = {}): Promise<string> {
    const r = await fetch(`${s.url}/v2/flux-2-klein-4b`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key.key },
      body: JSON.stringify({ prompt, ...FAST, ...extra, webhook_url: `${hookUrl}/${hook}` }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    return ((await r.json()) as { request_id: string }).request_id;
  }

  it('accepts our completed, failed and cancelled events as received; refuses tampered, replayed, restamped and foreign ones', async () => {
    const ids = {
      completed: await submit('a lighthouse', 'completed'),
      failed: await submit('boom [[fault:internal]]', 'failed'),
      cancelled: await submit('slow [[fault:sleep:300]]', 'cancelled', { steps: 20 }),
    };
    const c = await fetch(`${s.url}/v2/requests/${ids.cancelled}/cancel`, { method: 'POST', headers: { 'x-api-key': key.key } });
    assert.equal(((await c.json()) as { status: string }).status, 'CANCELLED');

    const deadline = Date.now() + 60_000;
    while (received.size < 3) {
      if (Date.now() > deadline) throw new Error(`webhooks received: ${[...received.keys()].join(', ') || 'none'}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    const file = join(dir, 'deliveries.json');
    const pairs = (raw: string[]) => raw.flatMap((v, i) => (i % 2 === 0 ? [[v, raw[i + 1]!]] : []));
    writeFileSync(file, JSON.stringify([...received.values()].map((d) => ({ name: d.name, body_b64: d.body.toString('base64'), headers: pairs(d.rawHeaders) }))));
    const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, key.webhook_secret as string, file], { env: { ...process.env, NO_PROXY: '*' } });
    const out = JSON.parse(stdout) as Record<string, Verdicts>;

    const want = { completed: ['request.completed', 'COMPLETED'], failed: ['request.failed', 'FAILED'], cancelled: ['request.cancelled', 'CANCELLED'] } as const;
    assert.deepEqual(Object.keys(out).sort(), Object.keys(want).sort());
    for (const [name, [type, status]] of Object.entries(want)) {
      const v = out[name]!;
      assert.ok('ok' in v.as_received, `${name}: ${JSON.stringify(v.as_received)}`);
      // verify() returns the parsed body: the same bytes the receiver got.
      assert.deepEqual(v.as_received.ok, JSON.parse(received.get(name)!.body.toString('utf8')));
      assert.equal(v.as_received.ok.type, type);
      assert.equal(v.as_received.ok.data.request_id, ids[name as keyof typeof ids]);
      assert.equal(v.as_received.ok.data.status, status);
      assert.deepEqual(v.tampered_body, { error: 'No matching signature found' }, name);
      assert.deepEqual(v.replayed_later, { error: 'Message timestamp too old' }, name);
      assert.deepEqual(v.restamped, { error: 'No matching signature found' }, name);
      assert.deepEqual(v.other_secret, { error: 'No matching signature found' }, name);
    }
  });
});
