/**
 * The official `openai` npm client generates and edits against this server (tiny engine,
 * real HTTP), with only the base URL and the key changed.
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
    assert.match(url ?? '', /\/v2\/requests\/.+\/output$/);
    const img = await fetch(url!, { headers: { authorization: `Bearer ${key.key}` } });
    assert.equal(img.status, 200);
    const meta = await sharp(Buffer.from(await img.arrayBuffer())).metadata();
    assert.ok(Math.abs(meta.width! / meta.height! - 1.5) < 0.02, `${meta.width}x${meta.height}`);
  });

  it('surfaces errors as the client\'s typed errors', async () => {
    await assert.rejects(client.images.generate({ prompt: 'x', n: 9 } as never), (e: unknown) => e instanceof OpenAI.BadRequestError);
    const bad = new OpenAI({ apiKey: 'kl_wrong', baseURL: `${s.url}/v1`, maxRetries: 0 });
    await assert.rejects(bad.images.generate({ prompt: 'x' }), (e: unknown) => e instanceof OpenAI.AuthenticationError);
  });
});
