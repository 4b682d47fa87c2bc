/**
 * Fuzz: several thousand random and malformed bodies, headers and content types against
 * the real server over HTTP. No answer may be a 500, every error must carry the envelope,
 * and the server must still generate afterwards. Seeded, so a failure reproduces.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { FAST, generate, startTestServer, type KeyInfo, type TestServer } from './harness.js';

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

describe('fuzzing the sync endpoint over HTTP', () => {
  let s: TestServer;
  let broke: KeyInfo;
  let rich: KeyInfo;
  const dispatcher = new Agent({ connections: 8 });

  before(async () => {
    s = await startTestServer({ KLEIN_LOG_LEVEL: 'error' });
    // No credits: anything that validates stops at 406 instead of running the engine.
    broke = s.createKey({ credits: '0', rpm: 1_000_000, concurrency: 1000 });
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
});
