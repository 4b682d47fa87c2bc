/**
 * Bad input is a 4xx in the envelope, never a 500 or 502, and no connection is held open by
 * a client that will not finish (contract §2, §8), over real sockets against the real server:
 *
 * - connections: a dripped body or dripped headers get 408 and are closed within the
 *   configured times, and with the default times within a minute of connecting (the one
 *   slow case); an answer given before the body (401) closes the connection; open
 *   connections are capped;
 * - malformed multipart, broken Unicode, objects and strings where numbers belong on the
 *   OpenAI routes, an admin grant beyond the largest balance, and framework-level errors
 *   (bad percent-encoding, a path segment too long, unknown routes and methods, bytes that
 *   are not HTTP, an empty JSON body on cancel): each its 4xx in the envelope, whose
 *   request_id is the x-request-id header.
 *
 * After each group the ledger invariant holds.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import { loadConfig } from '../../src/config.js';
import { connectionsCheckingIntervalMs } from '../../src/gateway/app.js';
import { openDatabase } from '../../src/store/db.js';
import type { Database } from '../../src/store/schema.js';
import { ledgerProblems } from '../support/ledger-invariant.js';
import { until } from '../support/until.js';
import { startTestServer, type KeyInfo, type TestServer } from './harness.js';
import { drip, rawExchange, rawSocket, type RawAnswer } from './net-helpers.js';
import { startServeProcess, type ServeProcess } from './serve-process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);
const DRIP_CLIENT = fileURLToPath(new URL('./drip-client.ts', import.meta.url));

function assertEnvelope(a: RawAnswer, status: number, code: string): { error: string; details?: Array<{ field: string; message: string }> } {
  assert.equal(a.status, status, `status ${a.status}: ${a.body}`);
  const j = JSON.parse(a.body) as { error: string; code: string; request_id: string; details?: Array<{ field: string; message: string }> };
  assert.equal(j.code, code, a.body);
  assert.equal(typeof j.error, 'string');
  assert.equal(j.request_id, a.headers['x-request-id'], 'the body names the request of the header');
  return j;
}

/** An error of an OpenAI route, in OpenAI's envelope (contract §8), with the request id in its header. */
async function openAiErrorOf(r: Response, status: number, code: string) {
  const text = await r.text();
  assert.equal(r.status, status, text);
  const j = JSON.parse(text) as { error: { message: string; type: string; param: string | null; code: string } };
  assert.deepEqual(Object.keys(j), ['error'], text);
  assert.equal(j.error.code, code, text);
  assert.equal(j.error.type, 'invalid_request_error', text);
  assert.match(r.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  return j.error;
}

async function envelopeOf(r: Response, status: number, code: string) {
  const text = await r.text();
  assert.equal(r.status, status, text);
  const j = JSON.parse(text) as { error: string; code: string; request_id: string; details?: Array<{ field: string; message: string }> };
  assert.equal(j.code, code, text);
  assert.equal(j.request_id, r.headers.get('x-request-id'));
  return j;
}

// The default-timeout case waits about a minute doing nothing: it runs beside the other
// suites of this file (which run one after the other), so the wait costs the run nothing.
describe('hostile input', { concurrency: 2 }, () => {
  describe('connections are bounded by default', () => {
    let s: ServeProcess;
    let key: KeyInfo;
    let dir: string;
    before(async () => {
      // The real defaults of KLEIN_REQUEST_TIMEOUT and KLEIN_HEADERS_TIMEOUT: nothing sets them.
      assert.equal(process.env.KLEIN_REQUEST_TIMEOUT, undefined);
      assert.equal(process.env.KLEIN_HEADERS_TIMEOUT, undefined);
      // A server process of its own: what is timed is its clock, not this test's event loop,
      // which the suites beside this one keep busy.
      dir = mkdtempSync(join(tmpdir(), 'klein-default-timeouts-'));
      s = await startServeProcess({ KLEIN_DATA_DIR: dir, KLEIN_MODEL: 'simulated:5' });
      key = await s.createKey({ credits: '1' });
    });
    after(async () => {
      await s?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    // The one slow case (about a minute): the promise is about the defaults, so only the
    // defaults can show it.
    it('a client that drips its body is answered 408 in the envelope and closed within a minute of connecting', async () => {
      const head = `POST /v1/flux-2-klein-4b HTTP/1.1\r\nhost: x\r\nx-api-key: ${key.key}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{`;
      // Client and server are processes of their own, so both clocks are free of this one's.
      const { stdout } = await run(process.execPath, ['--import', 'tsx', DRIP_CLIENT, s.url, Buffer.from(head, 'latin1').toString('base64'), '1000', '90000'], { encoding: 'utf8' });
      const a = JSON.parse(stdout) as RawAnswer;
      assertEnvelope(a, 408, 'request_timeout');
      assert.ok(a.closed, 'closed');
      assert.ok(a.ms < 60_000, `answered and closed ${a.ms} ms after connecting`);
    });
  });

  describe('bounded connections and bad input', () => {
    describe('connections are bounded', () => {
      let s: TestServer;
      let key: KeyInfo;
      before(async () => {
        s = await startTestServer({ KLEIN_MODEL: 'simulated:5', KLEIN_REQUEST_TIMEOUT: '3', KLEIN_HEADERS_TIMEOUT: '2', KLEIN_MAX_CONNECTIONS: '6' });
        key = s.createKey({ credits: '1' });
      });
      after(async () => s?.close());

      it('the defaults answer a dripping client within a minute', () => {
        const c = loadConfig({});
        // A 408 comes up to one checking interval after the timeout has passed.
        const worst = c.requestTimeoutMs + connectionsCheckingIntervalMs(c.headersTimeoutMs);
        assert.ok(worst < 60_000 && c.headersTimeoutMs <= c.requestTimeoutMs, `${c.requestTimeoutMs} + check / ${c.headersTimeoutMs}`);
        assert.ok(c.maxConnections > 0, 'open connections are capped by default');
      });

      it('a body dripped byte by byte: 408 in the envelope, connection closed, within the request timeout', async () => {
        const head = `POST /v1/flux-2-klein-4b HTTP/1.1\r\nhost: x\r\nx-api-key: ${key.key}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n`;
        const a = await rawExchange(s.url, head, { then: (sock) => drip(sock, 1000, 200), waitMs: 15_000 });
        assertEnvelope(a, 408, 'request_timeout');
        assert.ok(a.closed, 'closed');
        assert.ok(a.ms < 3000 + 2500, `answered after ${a.ms} ms (request timeout 3 s)`);
      });

      it('headers that never end: 408, closed, within the headers timeout', async () => {
        const a = await rawExchange(s.url, 'POST /v1/flux-2-klein-4b HTTP/1.1\r\nhost: x\r\n', { then: (sock) => drip(sock, 1000, 200, 'a'), waitMs: 15_000 });
        assertEnvelope(a, 408, 'request_timeout');
        assert.ok(a.closed);
        assert.ok(a.ms < 2000 + 2500, `answered after ${a.ms} ms (headers timeout 2 s)`);
      });

      it('an answer given before the body (401) closes the connection at once, whatever the client keeps sending', async () => {
        const head = 'POST /v1/flux-2-klein-4b HTTP/1.1\r\nhost: x\r\nx-api-key: kl_nobody\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{';
        const a = await rawExchange(s.url, head, { then: (sock) => drip(sock, 100_000, 50), waitMs: 15_000 });
        assertEnvelope(a, 401, 'unauthorized');
        assert.equal(a.headers.connection, 'close');
        assert.ok(a.closed && a.ms < 2000, `closed after ${a.ms} ms`);
      });

      it('a generation whose client drips its body is not queued, nor charged', async () => {
        const db = openDatabase({ dataDir: s.dataDir });
        try {
          const body = JSON.stringify({ prompt: 'never finished', width: 64, height: 64, steps: 1, cfg: 1 });
          const head = `POST /v1/flux-2-klein-4b HTTP/1.1\r\nhost: x\r\nx-api-key: ${key.key}\r\ncontent-type: application/json\r\ncontent-length: ${body.length + 10}\r\n\r\n${body}`;
          assertEnvelope(await rawExchange(s.url, head, { then: (sock) => drip(sock, 10, 1000, ' '), waitMs: 15_000 }), 408, 'request_timeout');
          assert.equal((await db.selectFrom('requests').select('id').execute()).length, 0);
          assert.deepEqual(await ledgerProblems(db), []);
          const after = await fetch(`${s.url}/v1/get-user-credits`, { headers: { 'x-api-key': key.key } });
          assert.equal(((await after.json()) as { credits: number }).credits, 1, 'nothing was charged');
        } finally {
          await db.destroy();
        }
      });

      it('open connections are capped: the one over the cap is closed at once', async () => {
        const held = await Promise.all(Array.from({ length: 6 }, () => rawSocket(s.url)));
        await sleep(200);
        const extra = await rawExchange(s.url, 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n', { waitMs: 5000 });
        assert.equal(extra.status, null, 'no answer over the cap');
        assert.ok(extra.closed, 'closed');
        for (const h of held) h.destroy();
        // Served again once the server has seen them close (a refused connection meanwhile).
        await until('served again once connections closed', async () => (await fetch(`${s.url}/health`).catch(() => null))?.status === 200, 10_000);
      });
    });

    describe('bad input is a 4xx in the envelope', () => {
      let s: TestServer;
      let key: KeyInfo;
      let admin: KeyInfo;
      let db: Kysely<Database>;
      before(async () => {
        s = await startTestServer({ KLEIN_MODEL: 'simulated:5' });
        key = s.createKey({ credits: '1' });
        admin = s.createKey({ credits: '0', admin: true });
        db = openDatabase({ dataDir: s.dataDir });
      });
      after(async () => {
        await db?.destroy();
        await s?.close();
      });

      const form = (boundary: string, parts: string) => ({
        method: 'POST',
        headers: { authorization: `Bearer ${key.key}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
        body: parts,
      });

      it('malformed multipart on /v1/images/edits: 400, never a 500', async () => {
        const png = 'PNGDATA';
        const cases: Array<[string, RequestInit, string]> = [
          ['a part cut short', form('xx', `--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n${png}`), 'invalid_multipart'],
          ['no boundary', { method: 'POST', headers: { authorization: `Bearer ${key.key}`, 'content-type': 'multipart/form-data' }, body: 'garbage' }, 'invalid_multipart'],
          ['garbage', form('xx', '\u0000\u0001 not a form at all'), 'invalid_multipart'],
          ['a part without headers end', form('xx', '--xx\r\nContent-Disposition: form-data; name="prompt"\r\n'), 'invalid_multipart'],
          ['a field twice', form('xx', '--xx\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na\r\n--xx\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nb\r\n--xx--\r\n'), 'validation_failed'],
          ['no image', form('xx', '--xx\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na\r\n--xx--\r\n'), 'validation_failed'],
        ];
        for (const [what, init, code] of cases) {
          const r = await fetch(`${s.url}/v1/images/edits`, init);
          const j = await openAiErrorOf(r, 400, code).catch((err: unknown) => {
            throw new Error(`${what}: ${String(err)}`);
          });
          assert.ok(j.message.length > 0, what);
        }
      });

      it('a prompt or negative_prompt that is not well-formed Unicode: 400 naming the field', async () => {
        for (const field of ['prompt', 'negative_prompt']) {
          const body = `{"prompt":"ok","${field}":"a\\ud800b","width":64,"height":64,"steps":1,"cfg":1}`.replace('"prompt":"ok","prompt"', '"prompt"');
          const r = await fetch(`${s.url}/v1/flux-2-klein-4b`, { method: 'POST', headers: { 'x-api-key': key.key, 'content-type': 'application/json' }, body });
          const j = await envelopeOf(r, 400, 'validation_failed');
          assert.equal(j.details?.[0]?.field, field);
          assert.match(j.details?.[0]?.message ?? '', /well-formed Unicode/);
        }
        const oa = await fetch(`${s.url}/v1/images/generations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
          body: '{"prompt":"\\udc00 lone low"}',
        });
        assert.equal((await openAiErrorOf(oa, 400, 'validation_failed')).param, 'prompt');
      });

      it('the OpenAI routes refuse objects, arrays, booleans and numeric strings where numbers or strings belong', async () => {
        const bodies: Array<[Record<string, unknown>, string]> = [
          [{ prompt: 'x', size: { toString: 1 } }, 'size'],
          [{ prompt: 'x', n: [2] }, 'n'],
          [{ prompt: 'x', n: true }, 'n'],
          [{ prompt: 'x', n: '2' }, 'n'],
          [{ prompt: 'x', seed: '12' }, 'seed'],
          [{ prompt: 'x', steps: 2.5 }, 'steps'],
          [{ prompt: 'x', cfg: '0x10' }, 'cfg'],
          [{ prompt: { toString: 'x' } }, 'prompt'],
          [{ prompt: 'x', model: ['flux-2-klein-4b'] }, 'model'],
          [{ prompt: 'x', response_format: 'png' }, 'response_format'],
          [{ prompt: 'x', output_compression: 101 }, 'output_compression'],
          [{ prompt: 'x', size: '64x64x64' }, 'size'],
          [{ prompt: 'x', unknown_field: 1 }, 'unknown_field'],
          [{ prompt: 'x', stream: true }, 'stream'],
        ];
        for (const [body, field] of bodies) {
          const r = await fetch(`${s.url}/v1/images/generations`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
          });
          const j = await openAiErrorOf(r, 400, 'validation_failed');
          assert.equal(j.param, field, JSON.stringify(body));
        }
        // Multipart fields are strings: plain decimals are numbers, anything else is refused by name.
        const png = await (await import('sharp')).default({ create: { width: 64, height: 64, channels: 3, background: '#345' } }).png().toBuffer();
        const edit = async (fields: Record<string, string>) => {
          const fd = new FormData();
          for (const [k, v] of Object.entries(fields)) fd.append(k, v);
          fd.append('image', new Blob([new Uint8Array(png)], { type: 'image/png' }), 'a.png');
          return fetch(`${s.url}/v1/images/edits`, { method: 'POST', headers: { authorization: `Bearer ${key.key}` }, body: fd });
        };
        for (const [k, v] of [['n', '0x2'], ['steps', '1e1'], ['seed', ' 5'], ['go_fast', 'yes'], ['cfg', '1,5']] as const) {
          const j = await openAiErrorOf(await edit({ prompt: 'x', size: '64x64', [k]: v }), 400, 'validation_failed');
          assert.equal(j.param, k);
        }
        const ok = await edit({ prompt: 'x', size: '64x64', steps: '2', cfg: '1', seed: '7', go_fast: 'false' });
        assert.equal(ok.status, 200, await ok.clone().text());
      });

      it('an admin credit grant beyond the largest balance: 400 with the bound', async () => {
        const target = s.createKey({ credits: '1' });
        const grant = (credits: unknown) =>
          fetch(`${s.url}/admin/accounts/${target.account_id}/credits`, { method: 'POST', headers: { 'x-api-key': admin.key, 'content-type': 'application/json' }, body: JSON.stringify({ credits }) });
        for (const c of ['9007199254.740991', '99999999999999', 9_007_199_255]) {
          const j = await envelopeOf(await grant(c), 400, 'validation_failed');
          assert.equal(j.details?.[0]?.field, 'credits');
          assert.match(j.error, /9007199254\.740991 credits/);
        }
        assert.equal((await grant('5')).status, 200);
        assert.deepEqual(await ledgerProblems(db), []);
      });

      it('framework-level errors keep the envelope: bad percent-encoding, a long path segment, unknown routes and methods, non-HTTP bytes', async () => {
        const get = (path: string, init: RequestInit = {}) => fetch(`${s.url}${path}`, { headers: { 'x-api-key': key.key }, ...init });
        await envelopeOf(await get('/v2/requests/%zz/status'), 400, 'bad_url');
        await envelopeOf(await get(`/v2/requests/${'a'.repeat(300)}/status`), 404, 'not_found');
        await envelopeOf(await get(`/v1/${'m'.repeat(300)}`, { method: 'POST' }), 404, 'not_found');
        await envelopeOf(await get('/no/such/route'), 404, 'not_found');
        await envelopeOf(await get('/v1/flux-2-klein-4b', { method: 'DELETE' }), 404, 'not_found');
        assertEnvelope(await rawExchange(s.url, 'PROPFIND /v1/flux-2-klein-4b HTTP/1.1\r\nhost: x\r\n\r\n'), 404, 'not_found');
        assertEnvelope(await rawExchange(s.url, 'BREW /v1/flux-2-klein-4b HTTP/1.1\r\nhost: x\r\n\r\n'), 400, 'bad_request');
        assertEnvelope(await rawExchange(s.url, 'this is not http\r\n\r\n'), 400, 'bad_request');
        assertEnvelope(await rawExchange(s.url, `GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'h'.repeat(20_000)}\r\n\r\n`), 431, 'headers_too_large');
      });

      it('an empty JSON body on cancel is no body: the route answers, not a parse error', async () => {
        const r = await fetch(`${s.url}/v2/requests/unknown-id/cancel`, { method: 'POST', headers: { 'x-api-key': key.key, 'content-type': 'application/json' } });
        await envelopeOf(r, 404, 'not_found');
      });

      it('leaves the ledger exact after all of the above', async () => {
        for (let i = 0; i < 100 && (await ledgerProblems(db)).length > 0; i++) await sleep(50);
        assert.deepEqual(await ledgerProblems(db), []);
      });
    });
  });
});
