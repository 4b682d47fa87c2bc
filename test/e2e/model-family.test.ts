/**
 * The klein family behind one embedded server (contract §6): three models at once — `tiny`
 * (distilled, the 4B's proportions), `tiny-base` (not distilled) and `tiny-9b` (the 9B's
 * block counts and text encoder) — each on its own engine process, its own routes, its own
 * defaults and price, through real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import OpenAI from 'openai';
import { ledgerProblems } from '../support/ledger-invariant.js';
import { openDatabase } from '../../src/store/db.js';
import { FAST, startTestServer, type TestServer } from './harness.js';

const MODELS = 'flux-2-klein-4b=tiny,flux-2-klein-4b-base=tiny-base,flux-2-klein-9b=tiny-9b';
const SLUGS = ['flux-2-klein-4b', 'flux-2-klein-4b-base', 'flux-2-klein-9b'];
type Json = Record<string, any>;

describe('three models behind one embedded server', { timeout: 600_000 }, () => {
  let s: TestServer;
  let key: string;
  const post = (path: string, body: unknown, k = key, headers: Record<string, string> = {}) =>
    fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': k, ...headers }, body: JSON.stringify(body) });

  before(async () => {
    // The 9B's own rate: 3× the 4B's default 0.00076 credits per megapixel-evaluation.
    s = await startTestServer({ KLEIN_MODELS: MODELS, KLEIN_PRICE_PER_MP_EVAL_FLUX_2_KLEIN_9B: '0.00228' });
    key = s.createKey({ credits: '100' }).key;
  });
  after(async () => s?.close());

  it('runs each model on its own engine process, each reporting its own variant', async () => {
    const engines = s.server.engines;
    assert.deepEqual([...engines.keys()], SLUGS);
    const pids = new Set([...engines.values()].map((e) => e.pid));
    assert.equal(pids.size, 3, 'three engine processes');
    assert.deepEqual(
      [...engines.values()].map((e) => e.facts?.variant),
      ['distilled', 'base', 'distilled'],
    );
    const h = (await (await fetch(`${s.url}/health`)).json()) as Json;
    assert.equal(h.status, 'READY');
    assert.deepEqual(Object.keys(h.models), SLUGS);
    assert.deepEqual(SLUGS.map((m) => [h.models[m].status, h.models[m].variant, h.models[m].source]), [
      ['READY', 'distilled', 'tiny'],
      ['READY', 'base', 'tiny-base'],
      ['READY', 'distilled', 'tiny-9b'],
    ]);
    assert.deepEqual(h.models['flux-2-klein-4b-base'].defaults, { steps: 50, cfg: 4 });
    for (const m of SLUGS) assert.equal((await fetch(`${s.url}/health/ready?model=${m}`)).status, 200, m);
    assert.equal((await fetch(`${s.url}/health/ready?model=flux-2-klein-12b`)).status, 404);
  });

  it('answers on /v1/{slug} for each, the model named in the PNG, the 9B with its own image', async () => {
    const pixels: string[] = [];
    for (const m of SLUGS) {
      const r = await post(`/v1/${m}`, { prompt: 'a red fox', seed: 7, ...FAST });
      assert.equal(r.status, 200, `${m}: ${r.status} ${r.status === 200 ? '' : await r.text()}`);
      const png = Buffer.from(await r.arrayBuffer());
      const meta = await sharp(png).metadata();
      assert.deepEqual([meta.width, meta.height], [64, 64]);
      const text = png.toString('latin1');
      assert.ok(text.includes(`"model":"${m}"`), `${m}'s PNG names it`);
      pixels.push((await sharp(png).raw().toBuffer()).toString('hex'));
    }
    // tiny and tiny-base share their miniature's weights (they differ in model_index.json's
    // is_distilled only), so at cfg 1 they agree; the 9B's miniature is another network.
    assert.notEqual(pixels[2], pixels[0], "the 9B's image is not the 4B's");
  });

  it("applies each model's own defaults: the base model runs 50 steps at cfg 4", async () => {
    const sub = (await (await post('/v2/flux-2-klein-4b-base', { prompt: 'defaults', width: 64, height: 64 })).json()) as Json;
    const distilled = (await (await post('/v2/flux-2-klein-4b', { prompt: 'defaults', width: 64, height: 64 })).json()) as Json;
    for (const id of [sub.request_id, distilled.request_id]) {
      for (;;) {
        const st = (await (await fetch(`${s.url}/v2/requests/${id}/status`, { headers: { 'x-api-key': key } })).json()) as Json;
        if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(st.status)) {
          assert.equal(st.status, 'COMPLETED', JSON.stringify(st));
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const rec = async (id: string) => (await (await fetch(`${s.url}/v2/requests/${id}`, { headers: { 'x-api-key': key } })).json()) as Json;
    const [base, dist] = [await rec(sub.request_id), await rec(distilled.request_id)];
    assert.deepEqual([base.input.steps, base.input.cfg], [50, 4]);
    assert.deepEqual([dist.input.steps, dist.input.cfg], [20, 5]);
  });

  it("charges each model's own price (KLEIN_PRICE_PER_MP_EVAL_<SLUG>)", async () => {
    const cost = async (m: string) => Number((await post(`/v1/${m}`, { prompt: 'price', ...FAST })).headers.get('x-cost'));
    // 64×64, 2 steps, cfg 1: 0.001 + ceil(rate × 0.004096 MP × 2) micro-credits.
    assert.equal(await cost('flux-2-klein-4b'), 0.001007);
    assert.equal(await cost('flux-2-klein-9b'), 0.001019);
  });

  it('is a 404 naming the served models for an unknown slug, on v1 and v2', async () => {
    for (const path of ['/v1/flux-2-klein-12b', '/v2/flux-2-klein-12b']) {
      const r = await post(path, { prompt: 'x' });
      assert.equal(r.status, 404);
      const b = (await r.json()) as Json;
      assert.equal(b.code, 'not_found');
      for (const m of SLUGS) assert.ok(b.error.includes(m), `${path}: ${b.error}`);
      assert.equal(b.request_id, r.headers.get('x-request-id'));
    }
  });

  it("refuses a key limited to other models with 403 naming those it may use, before reading the body", async () => {
    const only9b = s.createKey({ credits: '10', models: ['flux-2-klein-9b'] }).key;
    const r = await post('/v1/flux-2-klein-4b', { prompt: 'not mine', ...FAST }, only9b);
    assert.equal(r.status, 403);
    const b = (await r.json()) as Json;
    assert.equal(b.code, 'forbidden');
    assert.match(b.error, /flux-2-klein-9b/);
    assert.equal((await post('/v2/flux-2-klein-4b-base', { prompt: 'not mine' }, only9b)).status, 403);
    assert.equal((await post('/v1/flux-2-klein-9b', { prompt: 'mine', ...FAST }, only9b)).status, 200);
    const openai = new OpenAI({ apiKey: only9b, baseURL: `${s.url}/v1`, maxRetries: 0 });
    await assert.rejects(openai.images.generate({ model: 'flux-2-klein-4b', prompt: 'not mine', size: '64x64' as never }), (e: unknown) => e instanceof OpenAI.PermissionDeniedError);
  });

  it('takes each slug as the OpenAI model, and lists every model with its variant and defaults', async () => {
    const openai = new OpenAI({ apiKey: key, baseURL: `${s.url}/v1`, maxRetries: 0 });
    const list = await openai.models.list();
    const byId = new Map(list.data.map((m) => [m.id, m as unknown as Json]));
    for (const m of SLUGS) assert.equal(byId.get(m)?.slug, m);
    assert.deepEqual([byId.get('flux-2-klein-4b-base')?.variant, byId.get('flux-2-klein-4b-base')?.defaults], ['base', { steps: 50, cfg: 4 }]);
    assert.equal(byId.get('gpt-image-1')?.slug, 'flux-2-klein-4b', 'the aliases run the first served model');
    const img = await openai.images.generate({ model: 'flux-2-klein-9b', prompt: 'via openai', size: '64x64' as never, n: 1, ...({ steps: 2, cfg: 1 } as object) });
    const png = Buffer.from(img.data![0]!.b64_json!, 'base64');
    assert.ok(png.toString('latin1').includes('"model":"flux-2-klein-9b"'));
  });

  it('documents each model: its own routes and the base model its own defaults', async () => {
    const doc = (await (await fetch(`${s.url}/openapi.json`)).json()) as Json;
    for (const m of SLUGS) {
      assert.ok(doc.paths[`/v1/${m}`]?.post, `/v1/${m}`);
      assert.ok(doc.paths[`/v2/${m}`]?.post, `/v2/${m}`);
    }
    assert.equal(doc.paths['/v1/flux-2-klein-4b'].post.operationId, 'generate');
    assert.equal(doc.paths['/v2/flux-2-klein-9b'].post.operationId, 'submitRequest_flux_2_klein_9b');
    const body = (p: string) => doc.paths[p].post.requestBody.content['application/json'].schema.$ref;
    assert.equal(body('/v1/flux-2-klein-4b-base'), '#/components/schemas/GenerateBodyBase');
    assert.equal(body('/v2/flux-2-klein-9b'), '#/components/schemas/AsyncBody');
    assert.deepEqual([doc.components.schemas.GenerateBodyBase.properties.steps.default, doc.components.schemas.GenerateBodyBase.properties.cfg.default], [50, 4]);
  });

  it('exports the queue gauges per model, and keeps the ledger exact', async () => {
    const m = await (await fetch(`${s.url}/metrics`)).text();
    for (const slug of SLUGS) assert.match(m, new RegExp(`^klein_jobs_waiting\\{model="${slug}"\\} 0$`, 'm'));
    const db = openDatabase({ dataDir: s.dataDir, url: null });
    try {
      assert.deepEqual(await ledgerProblems(db), []);
      const rows = await db.selectFrom('requests').select(['model']).execute();
      assert.deepEqual(new Set(rows.map((r) => r.model)), new Set(SLUGS));
    } finally {
      await db.destroy();
    }
  });
});
