/**
 * The official `openai` npm client generates and edits against this server (tiny engine,
 * real HTTP), with only the base URL and the key changed: its errors carry OpenAI's
 * envelope (message, type, param, code), `model` takes the contract §8 default aliases, and
 * it lists the models.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import sharp from 'sharp';
import { startTestServer, type KeyInfo, type TestServer } from './harness.js';

describe('OpenAI-compatible image routes with the openai client', () => {
  let s: TestServer;
  let key: KeyInfo;
  let client: OpenAI;

  before(async () => {
    s = await startTestServer();
    key = s.createKey({ credits: '100', concurrency: 8 });
    client = new OpenAI({ apiKey: key.key, baseURL: `${s.url}/v1`, maxRetries: 0 });
  });
  after(() => s?.close());

  it('generates n images of the asked size, charged per image', async () => {
    const before = Number(((await (await fetch(`${s.url}/v1/get-user-credits`, { headers: { 'x-api-key': key.key } })).json()) as { credits: number }).credits);
    const r = await client.images.generate({ prompt: 'a red kite over the sea', n: 2, size: '1024x1536' as never, output_format: 'webp', steps: 1, cfg: 1 } as never);
    assert.equal(r.data?.length, 2);
    const [a, b] = await Promise.all(r.data!.map((d) => sharp(Buffer.from(d.b64_json!, 'base64')).metadata()));
    assert.deepEqual([a!.format, a!.width, a!.height], ['webp', 1024, 1536]);
    assert.equal(b!.width, 1024);
    assert.notEqual(r.data![0]!.b64_json, r.data![1]!.b64_json, 'two different images');
    const after = Number(((await (await fetch(`${s.url}/v1/get-user-credits`, { headers: { 'x-api-key': key.key } })).json()) as { credits: number }).credits);
    assert.ok(before - after > 0);
  });

  it('edits with an uploaded image (size auto follows the image) and answers URLs when asked', async () => {
    const png = await sharp({ create: { width: 192, height: 128, channels: 3, background: '#4488cc' } }).png().toBuffer();
    const r = await client.images.edit({
      image: await toFile(png, 'ref.png', { type: 'image/png' }),
      prompt: 'make it a sunset',
      response_format: 'url',
      steps: 1,
      cfg: 1,
    } as never);
    const url = r.data?.[0]?.url;
    // A signed link, as OpenAI's are: it needs no key (contract §9).
    assert.match(url ?? '', /\/v2\/requests\/.+\/output\?expires=\d+&sig=[\w-]+$/);
    const img = await fetch(url!);
    assert.equal(img.status, 200);
    const meta = await sharp(Buffer.from(await img.arrayBuffer())).metadata();
    assert.ok(Math.abs(meta.width! / meta.height! - 1.5) < 0.02, `${meta.width}x${meta.height}`);
  });

  it('surfaces errors as the client\'s typed errors, with the reason, the field and our code (OpenAI\'s envelope)', async () => {
    await assert.rejects(client.images.generate({ prompt: 'x', n: 9 } as never), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.status, 400);
      assert.equal(e.type, 'invalid_request_error');
      assert.equal(e.param, 'n');
      assert.equal(e.code, 'validation_failed');
      assert.match(e.message, /^400 n: .*4/, 'the reason, not just the status');
      assert.match(e.requestID ?? '', /^[0-9a-f-]{36}$/);
      return true;
    });
    const bad = new OpenAI({ apiKey: 'kl_wrong', baseURL: `${s.url}/v1`, maxRetries: 0 });
    await assert.rejects(bad.images.generate({ prompt: 'x' }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.AuthenticationError);
      assert.deepEqual([e.type, e.code, e.param], ['authentication_error', 'unauthorized', null]);
      return true;
    });
    await assert.rejects(bad.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError && e.type === 'authentication_error');
    const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#000' } }).png().toBuffer();
    await assert.rejects(client.images.edit({ image: await toFile(png, 'a.png', { type: 'image/png' }), prompt: 'x', size: '100x100' as never }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, 'width');
      return true;
    });
  });

  it('refuses a spent balance with our 406 and OpenAI\'s insufficient_quota type, which the client raises without retrying', async () => {
    const broke = s.createKey({ credits: '0' });
    const c = new OpenAI({ apiKey: broke.key, baseURL: `${s.url}/v1`, maxRetries: 2 });
    await assert.rejects(c.images.generate({ prompt: 'x' }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError);
      assert.deepEqual([e.status, e.type, e.code], [406, 'insufficient_quota', 'insufficient_credits']);
      assert.match(e.message, /credit/i);
      return true;
    });
  });

  it('takes a configured alias as model (gpt-image-1 runs unchanged) and names the models it takes', async () => {
    const r = await client.images.generate({ model: 'gpt-image-1', prompt: 'a lighthouse', size: '256x256' as never, steps: 1, cfg: 1 } as never);
    assert.equal(r.data?.length, 1);
    const meta = await sharp(Buffer.from(r.data![0]!.b64_json!, 'base64')).metadata();
    assert.deepEqual([meta.width, meta.height], [256, 256]);
    await assert.rejects(client.images.generate({ model: 'dall-e-9', prompt: 'x' }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, 'model');
      assert.match(e.message, /flux-2-klein-4b, gpt-image-1, dall-e-3, dall-e-2/);
      return true;
    });
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      assert.equal(m.object, 'model');
      assert.equal(m.owned_by, 'black-forest-labs');
      assert.ok(Number.isInteger(m.created));
      ids.push(m.id);
    }
    assert.deepEqual(ids, ['flux-2-klein-4b', 'gpt-image-1', 'dall-e-3', 'dall-e-2']);
    assert.equal((await client.models.retrieve('dall-e-3')).id, 'dall-e-3');
    await assert.rejects(client.models.retrieve('dall-e-9'), (e: unknown) => e instanceof OpenAI.NotFoundError && e.code === 'not_found' && e.param === 'model');
  });

  it('keeps the contract\'s envelope on the other routes', async () => {
    const r = await fetch(`${s.url}/v1/flux-2-klein-4b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': 'kl_wrong' }, body: '{}' });
    const body = (await r.json()) as { error: unknown; code: string; request_id: string };
    assert.equal(r.status, 401);
    assert.equal(typeof body.error, 'string');
    assert.equal(body.code, 'unauthorized');
    assert.equal(body.request_id, r.headers.get('x-request-id'));
  });
});
