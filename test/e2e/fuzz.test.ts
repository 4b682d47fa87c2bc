/**
 * Fuzz: several thousand random and malformed bodies, headers and content types against
 * the real server over HTTP. No answer may be a 500, every error must carry the envelope,
 * and the server must still generate afterwards. Seeded, so a failure reproduces.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { FAST, generate, startTestServer, type KeyInfo, type TestServer } from './harness.js';
import { openDatabase } from '../../src/store/db.js';
import { ledgerProblems } from '../support/ledger-invariant.js';

const COUNT = Number(process.env.KLEIN_FUZZ_COUNT ?? 3000);

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OPENAI_FIELDS = ['prompt', 'model', 'n', 'size', 'response_format', 'output_format', 'output_compression', 'seed', 'steps', 'cfg', 'negative_prompt', 'sampler', 'go_fast', 'quality', 'style', 'user', 'stream', 'partial_images', 'extra'];

const FIELDS = ['prompt', 'image_urls', 'negative_prompt', 'seed', 'cfg', 'sampler', 'steps', 'aspect_ratio', 'go_fast', 'image_format', 'quality', 'width', 'height', 'base64', 'webhook_url', '__proto__', 'constructor', 'extra'];

function randomValue(r: () => number, depth = 0): unknown {
  const k = Math.floor(r() * 14);
  switch (k) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return Math.floor(r() * 4000) - 2000;
    case 3: return (r() - 0.5) * 1e6;
    case 4: return [NaN, Infinity, -0, 2 ** 53, 2 ** 53 + 2, -1, 0, 1e308][Math.floor(r() * 8)];
    case 5: return 'x'.repeat(Math.floor(r() * 20));
    case 6: return ['1:1', '16:9', 'match_input_image', 'euler', 'res_2s', 'png', 'jpg', 'gif', '', ' ', '\u0000', '😀', '21:9', '7:3'][Math.floor(r() * 14)];
    case 7: return ['http://127.0.0.1/x.png', 'http://169.254.169.254/', 'file:///etc/passwd', 'data:image/png;base64,AAAA', 'data:image/png;base64,!!!', 'ftp://x', 'http://[::1]/', 'data:text/plain,hi', 'https://0x7f.1/'][Math.floor(r() * 9)];
    case 8: return depth < 3 ? Array.from({ length: Math.floor(r() * 6) }, () => randomValue(r, depth + 1)) : [];
    case 9: return depth < 3 ? randomBody(r, depth + 1) : {};
    case 10: return 'y'.repeat(10_001);
    case 11: return String(Math.floor(r() * 100));
    case 12: return Math.floor(r() * 130);
    default: return r() * 25;
  }
}

function randomBody(r: () => number, depth = 0): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const n = Math.floor(r() * 6);
  for (let i = 0; i < n; i++) body[FIELDS[Math.floor(r() * FIELDS.length)] ?? 'x'] = randomValue(r, depth);
  if (r() < 0.6) body.prompt = r() < 0.9 ? 'a test' : randomValue(r, depth);
  return body;
}

function randomRaw(r: () => number): { body: string | Buffer; contentType: string | undefined } {
  const k = Math.floor(r() * 10);
  if (k === 0) return { body: '{"prompt": "x"', contentType: 'application/json' };
  if (k === 1) return { body: Buffer.from(Array.from({ length: 64 }, () => Math.floor(r() * 256))), contentType: 'application/json' };
  if (k === 2) return { body: 'prompt=x', contentType: 'application/x-www-form-urlencoded' };
  if (k === 3) return { body: '', contentType: 'application/json' };
  if (k === 4) return { body: '[1,2,3]', contentType: 'application/json' };
  if (k === 5) return { body: '"just a string"', contentType: 'application/json' };
  if (k === 6) return { body: JSON.stringify(randomBody(r)), contentType: undefined };
  if (k === 7) return { body: JSON.stringify(randomBody(r)), contentType: 'text/plain' };
  if (k === 8) return { body: '{"prompt":"x","prompt":"y","steps":1e400}', contentType: 'application/json; charset=utf-8' };
  return { body: JSON.stringify(randomBody(r)), contentType: 'application/json' };
}

/** A random OpenAI body: field names of the OpenAI routes, values of any JSON type. */
function randomOpenAiBody(r: () => number): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const n = Math.floor(r() * 6);
  for (let i = 0; i < n; i++) body[OPENAI_FIELDS[Math.floor(r() * OPENAI_FIELDS.length)] ?? 'x'] = randomValue(r);
  if (r() < 0.6) body.prompt = r() < 0.9 ? 'a test' : randomValue(r);
  if (r() < 0.3) body.size = ['64x64', '1024x1024', 'auto', '63x64', '64X64', '4096x4096', { toString: 1 }, ['64x64']][Math.floor(r() * 8)];
  // Lone surrogates (JSON can carry them, UTF-8 cannot) and a well-formed pair.
  if (r() < 0.2) body.prompt = ['\ud800', 'a\udc00b', '\ud83d\ude00 ok'][Math.floor(r() * 3)];
  return body;
}

/** A random multipart body: well-formed, cut short, without a boundary, or bytes. */
function randomForm(r: () => number): { body: Buffer | string; contentType: string } {
  const b = `b${Math.floor(r() * 1e6)}`;
  const field = (name: string, value: string) => `--${b}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const file = (name: string, bytes: string) => `--${b}\r\nContent-Disposition: form-data; name="${name}"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n${bytes}\r\n`;
  const parts: string[] = [];
  const n = Math.floor(r() * 6);
  for (let i = 0; i < n; i++) {
    const k = OPENAI_FIELDS[Math.floor(r() * OPENAI_FIELDS.length)] ?? 'x';
    parts.push(r() < 0.8 ? field(k, String(randomValue(r)).slice(0, 200)) : file(r() < 0.7 ? 'image' : k, 'not really a png'));
  }
  let body = parts.join('') + `--${b}--\r\n`;
  const k = Math.floor(r() * 6);
  if (k === 0) body = body.slice(0, Math.floor(r() * body.length));
  if (k === 1) return { body, contentType: 'multipart/form-data' };
  if (k === 2) return { body: Buffer.from(Array.from({ length: 80 }, () => Math.floor(r() * 256))), contentType: `multipart/form-data; boundary=${b}` };
  return { body, contentType: `multipart/form-data; boundary=${k === 3 ? 'other' : b}` };
}

describe('fuzzing the sync endpoint over HTTP', () => {
  let s: TestServer;
  let broke: KeyInfo;
  let rich: KeyInfo;
  const dispatcher = new Agent({ connections: 8 });

  before(async () => {
    s = await startTestServer({ KLEIN_LOG_LEVEL: 'error' });
    // Exactly the cheapest request's price (64², one step, no guidance): past the credit floor
    // checked before the body is read, so bodies are validated; anything that validates and
    // costs more stops at 406 instead of running the engine.
    broke = s.createKey({ credits: '0.001004', rpm: 1_000_000, concurrency: 1000 });
    rich = s.createKey({ credits: '100' });
  });
  after(async () => {
    await dispatcher.close();
    await s?.close();
  });

  it(`answers ${COUNT} random bodies without a 500 and keeps serving`, async () => {
    const r = rng(20261125);
    const statuses = new Map<number, number>();
    for (let i = 0; i < COUNT; i++) {
      const { body, contentType } = randomRaw(r);
      const headers: Record<string, string> = { 'x-api-key': broke.key };
      if (contentType) headers['content-type'] = contentType;
      const path = r() < 0.05 ? '/v1/other-model' : '/v1/flux-2-klein-4b';
      const res = await request(`${s.url}${path}`, { method: 'POST', headers, body, dispatcher });
      const text = await res.body.text();
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      assert.ok(res.statusCode < 500, `#${i}: ${res.statusCode} for ${String(body).slice(0, 200)} → ${text.slice(0, 200)}`);
      if (res.statusCode >= 400) {
        const j = JSON.parse(text) as { error?: unknown; code?: unknown; request_id?: unknown };
        assert.equal(typeof j.error, 'string');
        assert.equal(typeof j.code, 'string');
        assert.equal(j.request_id, res.headers['x-request-id']);
      }
    }
    assert.ok((statuses.get(400) ?? 0) > COUNT / 4, `mostly 400s: ${JSON.stringify([...statuses])}`);
    const after = await generate(s.url, rich.key, { prompt: 'still alive', ...FAST });
    assert.equal(after.status, 200);
  });

  it(`answers ${COUNT / 2} random OpenAI bodies and forms without a 500, in OpenAI's envelope, and the ledger stays exact`, async () => {
    const r = rng(20261129);
    const statuses = new Map<number, number>();
    for (let i = 0; i < COUNT / 2; i++) {
      const multipart = r() < 0.4;
      const { body, contentType } = multipart ? randomForm(r) : { body: JSON.stringify(randomOpenAiBody(r)), contentType: 'application/json' };
      const path = multipart ? '/v1/images/edits' : '/v1/images/generations';
      const res = await request(`${s.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${broke.key}`, 'content-type': contentType }, body, dispatcher });
      const text = await res.body.text();
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      assert.ok(res.statusCode < 500, `#${i}: ${res.statusCode} for ${String(body).slice(0, 200)} → ${text.slice(0, 200)}`);
      if (res.statusCode >= 400) {
        // OpenAI's envelope (contract §8); the request id is in its header.
        const j = JSON.parse(text) as { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } };
        assert.equal(typeof j.error?.message, 'string', text);
        assert.equal(typeof j.error?.type, 'string', text);
        assert.equal(typeof j.error?.code, 'string', text);
        assert.ok(j.error?.param === null || typeof j.error?.param === 'string', text);
        assert.equal(typeof res.headers['x-request-id'], 'string');
      }
    }
    assert.ok((statuses.get(400) ?? 0) > COUNT / 8, `mostly 400s: ${JSON.stringify([...statuses])}`);
    const db = openDatabase({ dataDir: s.dataDir });
    try {
      assert.deepEqual(await ledgerProblems(db), []);
    } finally {
      await db.destroy();
    }
  });
});
