/**
 * Batching end to end on the embedded server with the real `tiny` engine and
 * KLEIN_MAX_BATCH=4: compatible requests queued together run as one batch (each record's
 * metrics.batch_size and the klein_batch_size histogram say so) and give the images they
 * give one by one; incompatible ones never share a batch; cancelling one leaves the others;
 * an engine crash mid-batch requeues the asynchronous requests and fails and releases the
 * synchronous ones.
 *
 * Batches are formed without timing: a blocker request holds the engine while the others
 * are queued (their rows committed, sync ones seen in klein_jobs_waiting), and is then
 * cancelled, so the queue finds them all waiting when the engine is free.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { FAST, generate, startTestServer, waitReady, type KeyInfo, type TestServer } from './harness.js';

type Json = Record<string, any>;

const SIZE = { ...FAST, steps: 3 };

describe('batching (tiny engine, KLEIN_MAX_BATCH=4)', () => {
  let s: TestServer;
  let key: KeyInfo;

  before(async () => {
    s = await startTestServer({ KLEIN_MAX_BATCH: '4', KLEIN_ENGINE_FAULTS: '1' });
    key = s.createKey({ credits: '1000', rpm: 10_000, concurrency: 50 });
  });
  after(async () => s?.close());

  const api = async (method: string, path: string, body?: Json): Promise<Json> => {
    const r = await fetch(`${s.url}${path}`, {
      method,
      headers: { 'x-api-key': key.key, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${await r.clone().text()}`);
    return (await r.json()) as Json;
  };
  const submit = async (body: Json): Promise<string> => (await api('POST', '/v2/flux-2-klein-4b', body)).request_id as string;
  const record = (id: string) => api('GET', `/v2/requests/${id}`);

  async function settled(id: string, timeoutMs = 120_000): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await record(id);
      if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(r.status)) return r;
      if (Date.now() > deadline) throw new Error(`${id} still ${r.status}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    // The queue gauges carry the model's label; the other metrics none.
    return Number(new RegExp(`^${name}(?:\\{model="flux-2-klein-4b"\\})? ([\\d.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  }

  /** A request that holds the engine until it is cancelled (one step every 300 ms). */
  async function block(): Promise<string> {
    const id = await submit({ prompt: 'blocker [[fault:sleep:300]]', ...FAST, steps: 100 });
    for (;;) {
      if ((await api('GET', `/v2/requests/${id}/status`)).status === 'PROCESSING') return id;
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async function waitingIs(n: number): Promise<void> {
    while ((await metric('klein_jobs_waiting')) !== n) await new Promise((res) => setTimeout(res, 50));
  }

  async function pixels(id: string): Promise<Buffer> {
    const r = await fetch(`${s.url}/v2/requests/${id}/output`, { headers: { 'x-api-key': key.key } });
    assert.equal(r.status, 200);
    return sharp(Buffer.from(await r.arrayBuffer())).raw().toBuffer();
  }

  const credits = async () => Number((await api('GET', '/v1/get-user-credits')).credits);

  /** Waits for each request to complete in a batch of `size`; returns what they cost. */
  async function completedIn(size: number, ids: string[]): Promise<number> {
    let charged = 0;
    for (const id of ids) {
      const r = await settled(id);
      assert.equal(r.status, 'COMPLETED');
      assert.equal(r.metrics.batch_size, size, `${r.input.prompt} ran in a batch of ${r.metrics.batch_size}`);
      charged += r.metrics.cost;
    }
    return charged;
  }

  it('runs compatible queued requests as one batch, with the images they give alone; incompatible ones alone', async () => {
    const blocker = await block();
    const batchesBefore = { count: await metric('klein_batch_size_count'), sum: await metric('klein_batch_size_sum') };
    // Prompts, seeds, CFG scales and the route differ; size, steps, sampler and CFG on do not.
    const bodies = [0, 1].map((i) => ({ ...SIZE, prompt: `a lighthouse ${i}`, seed: 10 + i, cfg: 2 + i * 2 }));
    const batched = [await submit(bodies[0]!), await submit(bodies[1]!)];
    // A synchronous request joins too; its id comes with its answer.
    const syncBody = { ...SIZE, prompt: 'a red fox', seed: 30, cfg: 3, negative_prompt: 'fog' };
    const syncCall = generate(s.url, key.key, syncBody);
    await waitingIs(3);
    const alone = [
      await submit({ ...SIZE, prompt: 'other steps', cfg: 2, steps: 4 }),
      await submit({ ...SIZE, prompt: 'exact path', cfg: 2, go_fast: false }),
      await submit({ ...SIZE, prompt: 'other size', cfg: 2, width: 80 }),
      await submit({ ...SIZE, prompt: 'no cfg', cfg: 1 }),
    ];
    await api('POST', `/v2/requests/${blocker}/cancel`);
    const syncAnswer = await syncCall;
    assert.equal(syncAnswer.status, 200);
    const syncId = syncAnswer.headers.get('x-request-id')!;
    const syncPng = Buffer.from(await syncAnswer.arrayBuffer());

    await completedIn(3, [...batched, syncId]);
    await completedIn(1, alone);
    // One batch of three and four of one since the blocker's.
    assert.equal((await metric('klein_batch_size_count')) - batchesBefore.count, 5);
    assert.equal((await metric('klein_batch_size_sum')) - batchesBefore.sum, 7);

    // The same requests one at a time (nothing else queued) give the same images: batching
    // changes at most the last bit of a channel (float32 tiny: 1e-5 on the latents).
    const rerun = [...bodies, syncBody];
    const outputs = [...(await Promise.all(batched.map(pixels))), await sharp(syncPng).raw().toBuffer()];
    for (const [i, body] of rerun.entries()) {
      const id = await submit(body);
      await completedIn(1, [id]);
      const one = await pixels(id);
      const many = outputs[i]!;
      assert.equal(one.length, many.length);
      let worst = 0;
      for (let p = 0; p < one.length; p++) worst = Math.max(worst, Math.abs(one[p]! - many[p]!));
      assert.ok(worst <= 1, `request ${i}: batched and alone differ by ${worst}`);
    }
    const first = outputs[0]!;
    assert.ok(first.some((v, p) => v !== outputs[1]![p]), 'the requests of the batch gave different images');
  });

  it('cancels one request of a running batch and finishes the others, charging only them', async () => {
    const before = await credits();
    const blocker = await block();
    // The slow member sleeps at each of its steps, so the batch runs slowly while it is in
    // it; once it is cancelled the others finish at tiny's speed.
    const slow = await submit({ prompt: 'slow [[fault:sleep:200]]', ...SIZE, steps: 60 });
    const others = [await submit({ prompt: 'kept 1', ...SIZE, steps: 60 }), await submit({ prompt: 'kept 2', ...SIZE, steps: 60 })];
    await api('POST', `/v2/requests/${blocker}/cancel`);
    for (;;) {
      const st = await api('GET', `/v2/requests/${others[0]}/status`);
      if (st.progress?.step >= 1) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    await api('POST', `/v2/requests/${slow}/cancel`);
    assert.equal((await settled(slow)).status, 'CANCELLED');
    const charged = await completedIn(3, others);
    assert.ok(Math.abs(before - (await credits()) - charged) < 1e-9, 'only the completed requests were charged');
  });

  it('on an engine crash mid-batch, requeues the asynchronous requests and fails and releases the synchronous ones', async () => {
    const before = await credits();
    const blocker = await block();
    const crashing = generate(s.url, key.key, { prompt: 'crash [[fault:crash]]', ...SIZE });
    const bystander = generate(s.url, key.key, { prompt: 'sync bystander', ...SIZE });
    await waitingIs(2);
    const asyncIds = [await submit({ prompt: 'async 1', ...SIZE }), await submit({ prompt: 'async 2', ...SIZE })];
    await api('POST', `/v2/requests/${blocker}/cancel`);
    for (const call of [crashing, bystander]) {
      const r = await call;
      assert.equal(r.status, 502);
      assert.equal(((await r.json()) as Json).code, 'engine_failed');
    }
    await waitReady(s.url, 120_000, true);
    // Requeued together, they ran again together once the engine was back.
    const charged = await completedIn(2, asyncIds);
    assert.ok(Math.abs(before - (await credits()) - charged) < 1e-9, 'the failed synchronous requests were released');
  });
});
