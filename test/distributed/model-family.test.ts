/**
 * The klein family in a fleet (contract §6): one gateway serving three models, a worker
 * per model (`klein worker --model <slug>`), each with its own BullMQ queue. Real engines
 * on the miniatures (tiny, tiny-base, tiny-9b), real PostgreSQL and Redis, the real
 * `klein` command. When a model's workers are all gone, its synchronous calls are a 503
 * with Retry-After (not a hang) while its asynchronous ones wait in its queue for the next
 * worker; the other models are unaffected.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { ledgerProblems } from '../support/ledger-invariant.js';
import type { FileServer } from '../support/safetensors-files.js';
import { makeTestLoras } from '../support/test-loras.js';
import { until } from '../support/until.js';
import { startStack, type Proc, type Stack } from './stack.js';

const SLUGS = ['flux-2-klein-4b', 'flux-2-klein-4b-base', 'flux-2-klein-9b'] as const;
const MODELS = 'flux-2-klein-4b=tiny,flux-2-klein-4b-base=tiny-base,flux-2-klein-9b=tiny-9b';
const SMALL = { width: 64, height: 64, steps: 2, cfg: 1 };
type Json = Record<string, any>;

describe('fleet: three models, a worker each', { timeout: 600_000 }, () => {
  let s: Stack;
  let key: string;
  let url: string;
  let files: FileServer;
  const workers = new Map<string, Proc>();
  const post = (path: string, body: unknown) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(body) });
  const status = async (id: string) => ((await (await fetch(`${url}/v2/requests/${id}/status`, { headers: { 'x-api-key': key } })).json()) as Json).status as string;
  const health = async () => (await (await fetch(`${url}/health`)).json()) as Json;
  const liveWorkers = async (slug: string) => (await health()).models[slug].workers as number;

  before(async () => {
    files = await makeTestLoras().serve({ 'fox.safetensors': 'fox', 'nine.safetensors': 'nine' });
    s = await startStack({ env: { KLEIN_MODELS: MODELS, KLEIN_ALLOW_NETWORKS: '127.0.0.0/8' } });
    url = (await s.startGateway()).url;
    key = await s.key({ credits: '100' });
    for (const slug of SLUGS) workers.set(slug, await s.startWorker({}, ['--model', slug]));
    await s.waitWorkers(3, 180_000);
  });
  after(async () => {
    await s?.stop();
    await files?.close();
  });

  it("runs each model's requests on that model's worker, through its own queue", async () => {
    const h = await health();
    const list = h.workers.list as Array<{ id: string; model: string }>;
    assert.deepEqual(list.map((w) => w.model).sort(), [...SLUGS].sort());
    for (const slug of SLUGS) {
      assert.equal(h.models[slug].workers, 1, slug);
      const r = await post(`/v1/${slug}`, { prompt: 'a fox', ...SMALL });
      assert.equal(r.status, 200, `${slug}: ${await r.clone().text()}`);
      const png = Buffer.from(await r.arrayBuffer());
      assert.ok(png.toString('latin1').includes(`"model":"${slug}"`), slug);
      const row = await s.db.selectFrom('requests').select(['model', 'worker_id']).where('id', '=', r.headers.get('x-request-id')!).executeTakeFirstOrThrow();
      assert.equal(row.model, slug);
      assert.equal(row.worker_id, list.find((w) => w.model === slug)!.id, `${slug} ran on its own worker`);
    }
  });

  it("answers a sync call 503 with Retry-After when the model's workers are gone; an async one waits in its queue for the next", async () => {
    const nine = workers.get('flux-2-klein-9b')!;
    nine.child.kill('SIGTERM'); // a drain, as a scale-in does
    await nine.exited;
    await until('the 9B worker gone from the fleet', async () => (await liveWorkers('flux-2-klein-9b')) === 0, 120_000, 100);

    const sync = await post('/v1/flux-2-klein-9b', { prompt: 'nobody serves me', ...SMALL });
    assert.equal(sync.status, 503);
    const body = (await sync.json()) as Json;
    assert.equal(body.code, 'no_workers');
    assert.ok(Number(sync.headers.get('retry-after')) > 0, 'Retry-After');
    assert.equal(body.request_id, sync.headers.get('x-request-id'));
    assert.equal((await fetch(`${url}/health/ready?model=flux-2-klein-9b`)).status, 503);
    assert.equal((await fetch(`${url}/health/ready?model=flux-2-klein-4b`)).status, 200);
    // The other models are served as before.
    assert.equal((await post('/v1/flux-2-klein-4b', { prompt: 'still served', ...SMALL })).status, 200);

    const queued = (await (await post('/v2/flux-2-klein-9b', { prompt: 'I wait', ...SMALL })).json()) as Json;
    assert.equal(queued.status, 'QUEUED');
    await until('the gauge shows it', async () => /^klein_jobs_waiting\{model="flux-2-klein-9b"\} 1$/m.test(await (await fetch(`${url}/metrics`)).text()), 120_000, 100);
    assert.match(await (await fetch(`${url}/metrics`)).text(), /^klein_jobs_waiting\{model="flux-2-klein-4b"\} 0$/m);
    const r = new Redis(s.redis.url);
    try {
      assert.equal(await r.llen('klein:bull:generate.flux-2-klein-9b:wait'), 1, "the 9B's queue holds it");
      assert.equal(await r.llen('klein:bull:generate.flux-2-klein-4b:wait'), 0);
    } finally {
      r.disconnect();
    }
    assert.equal(await status(queued.request_id), 'QUEUED');

    workers.set('flux-2-klein-9b', await s.startWorker({}, ['--model', 'flux-2-klein-9b']));
    await until('the new 9B worker serves the waiting request', async () => (await status(queued.request_id)) === 'COMPLETED', 120_000, 100);
    assert.equal((await post('/v1/flux-2-klein-9b', { prompt: 'served again', ...SMALL })).status, 200);
  });

  it("applies a LoRA on a fleet worker, and refuses one drawn for another model from the dims the workers report", async () => {
    const body = { prompt: 'a fox', seed: 4, ...SMALL };
    const png = async (r: Response) => {
      assert.equal(r.status, 200, await r.clone().text());
      return Buffer.from(await r.arrayBuffer()).toString('base64');
    };
    const plain = await png(await post('/v1/flux-2-klein-4b', body));
    assert.notEqual(await png(await post('/v1/flux-2-klein-4b', { ...body, loras: [{ path: `${files.base}/fox.safetensors` }] })), plain);
    assert.equal(await png(await post('/v1/flux-2-klein-4b', body)), plain, "the worker's base weights are untouched");
    // nine.safetensors fits tiny-9b's layers: served on the 9B, refused on the 4B at admission.
    assert.equal((await post('/v1/flux-2-klein-9b', { ...body, loras: [{ path: `${files.base}/nine.safetensors` }] })).status, 200);
    const wrong = await post('/v1/flux-2-klein-4b', { ...body, loras: [{ path: `${files.base}/nine.safetensors` }] });
    assert.equal(wrong.status, 400);
    assert.equal(((await wrong.json()) as Json).code, 'invalid_lora');
    const row = await s.db.selectFrom('requests').select('id').where('id', '=', wrong.headers.get('x-request-id')!).executeTakeFirst();
    assert.equal(row, undefined, 'refused at admission: nothing queued');
  });

  it('keeps the ledger exact: the 503 charged nothing', async () => {
    assert.deepEqual(await ledgerProblems(s.db), []);
    const refused = await s.db.selectFrom('requests').select('id').where('model', '=', 'flux-2-klein-9b').where('status', '!=', 'COMPLETED').execute();
    assert.deepEqual(refused, [], 'the refused call left no request behind');
  });
});
