/**
 * S3-compatible output storage against a real S3 server on loopback (moto's standalone
 * server, installed by `npm test` into .test-services/): object round trip, presigned URLs,
 * and the async API serving outputs through presigned links.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { S3Storage } from '../src/storage/s3.js';
import { FAST, startTestServer } from './e2e/harness.js';

const root = new URL('..', import.meta.url).pathname;
const MOTO = join(root, '.test-services', 'moto', 'bin', 'moto_server');
const skip = existsSync(MOTO) ? false : 'no S3-compatible server: run `node scripts/setup-test-services.mjs` (npm test does)';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('S3 output storage', { skip }, () => {
  let moto: ChildProcess;
  let endpoint = '';
  const creds = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' };

  before(async () => {
    Object.assign(process.env, creds);
    const port = await freePort();
    endpoint = `http://127.0.0.1:${port}`;
    moto = spawn(MOTO, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      try {
        await fetch(endpoint);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true });
    await client.send(new CreateBucketCommand({ Bucket: 'klein-test' }));
    client.destroy();
  });

  after(() => {
    moto?.kill('SIGTERM');
  });

  it('puts, gets, presigns and deletes objects', async () => {
    const s3 = new S3Storage({ bucket: 'klein-test', endpoint, region: 'us-east-1', prefix: 'unit/', forcePathStyle: true });
    const bytes = Buffer.from('hello object');
    await s3.put('outputs/a.png', bytes, 'image/png');
    assert.ok((await s3.get('outputs/a.png'))?.equals(bytes));
    const url = await s3.directUrl('outputs/a.png', 60);
    assert.match(url ?? '', /X-Amz-Signature=/);
    const r = await fetch(url!);
    assert.equal(r.status, 200);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(bytes));
    await s3.delete('outputs/a.png');
    assert.equal(await s3.get('outputs/a.png'), null);
    s3.destroy();
  });

  it('serves async outputs through presigned URLs', async () => {
    const s = await startTestServer({ S3_BUCKET: 'klein-test', S3_ENDPOINT: endpoint, ...creds });
    try {
      const k = s.createKey({ credits: '10' });
      const sub = (await (
        await fetch(`${s.url}/v2/flux-2-klein-4b`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': k.key },
          body: JSON.stringify({ prompt: 'to the bucket', ...FAST }),
        })
      ).json()) as { request_id: string };
      let rec: { status: string; output: string | null } = { status: 'QUEUED', output: null };
      for (let i = 0; i < 600 && rec.status !== 'COMPLETED'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        rec = (await (await fetch(`${s.url}/v2/requests/${sub.request_id}`, { headers: { 'x-api-key': k.key } })).json()) as typeof rec;
      }
      assert.equal(rec.status, 'COMPLETED');
      assert.ok(rec.output?.startsWith(`${endpoint}/klein-test/outputs/${sub.request_id}.png`), rec.output ?? '');
      const img = await fetch(rec.output!);
      assert.equal(img.status, 200);
      assert.equal((await sharp(Buffer.from(await img.arrayBuffer())).metadata()).width, 64);
      // The API route serves it too (read back from the bucket).
      const viaApi = await fetch(`${s.url}/v2/requests/${sub.request_id}/output`, { headers: { 'x-api-key': k.key } });
      assert.equal(viaApi.status, 200);
    } finally {
      await s.close();
    }
  });
});
