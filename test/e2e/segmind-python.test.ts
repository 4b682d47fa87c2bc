/**
 * Segmind's own Python SDK (`segmind`, pinned in test/clients/requirements.txt, installed
 * into .test-services/clients/ by scripts/setup-test-services.mjs, which `npm test` runs)
 * against this server (tiny engine, real HTTP), through test/clients/segmind_client.py,
 * with only base_url (ending in /v1) and api_key changed: run_sync answers the image bytes,
 * run and submit_async reach COMPLETED through the SDK's own polling, a failure raises
 * InferenceFailed, SegmindError carries our status and message, and the calls that go to
 * Segmind's own hosts are listed (README "Clients written for Segmind"). A missing venv
 * fails the test rather than skipping it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/config.js';
import { startTestServer, type KeyInfo, type TestServer } from './harness.js';

const PYTHON = resolve(projectRoot(), '.test-services/clients/bin/python');
const SCRIPT = resolve(projectRoot(), 'test/clients/segmind_client.py');
const UUID = /^[0-9a-f-]{36}$/;

interface Raised {
  class: string | null;
  status: number | null;
  detail: unknown;
  status_body?: Record<string, unknown>;
}

interface Printed {
  version: string;
  run_sync: { status: number; content_type: string; size: [number, number]; seed: string; request_id: string };
  run: { status: string; request_id: string; seed: number; output_is_url: boolean; output_size: [number, number]; cost: number };
  submit_async: { request_id: string; status_url: string; response_url: string; result_status: string; result_request_id: string };
  failed: Raised & { record_error: { code: string; message: string } };
  cancelled: Raised & { cancel_answer: { status: string; cancelled: boolean }; status_now: string };
  bad_param_sync: Raised;
  unknown_param_sync: Raised;
  bad_param_async: Raised;
  bad_key_sync: Raised;
  bad_key_async: Raised;
  segmind_hosts: Record<string, string | null>;
}

describe("Segmind's Python SDK against the Segmind-compatible routes", () => {
  let s: TestServer;
  let key: KeyInfo;

  before(async () => {
    assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run node scripts/setup-test-services.mjs (npm test does)`);
    s = await startTestServer({ KLEIN_ENGINE_FAULTS: '1' });
    key = s.createKey({ credits: '100', concurrency: 4 });
  });
  after(() => s?.close());

  it('runs sync and async generations, raises with our status and message, and names the hosts it cannot leave', async () => {
    const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, s.url, key.key], { env: { ...process.env, NO_PROXY: '*' }, maxBuffer: 16 * 1024 * 1024 });
    const out = JSON.parse(stdout) as Printed;
    assert.equal(out.version, '1.3.0');

    // run_sync: POST /v1/flux-2-klein-4b, the raw image in the body, our headers on it.
    assert.deepEqual(out.run_sync, { status: 200, content_type: 'image/png', size: [64, 64], seed: '7', request_id: out.run_sync.request_id });
    assert.match(out.run_sync.request_id, UUID);

    // run: POST /v2/flux-2-klein-4b (the SDK swaps base_url's /v1 for /v2), polls status_url, returns response_url's body.
    assert.equal(out.run.status, 'COMPLETED');
    assert.match(out.run.request_id, UUID);
    assert.equal(out.run.seed, 8);
    assert.ok(out.run.output_is_url, 'output is a link on this server');
    assert.deepEqual(out.run.output_size, [64, 64]);
    assert.ok(out.run.cost > 0, String(out.run.cost));

    // submit_async + wait: the links it polls are the absolute ones we answered.
    const a = out.submit_async;
    assert.equal(a.status_url, `${s.url}/v2/requests/${a.request_id}/status`);
    assert.equal(a.response_url, `${s.url}/v2/requests/${a.request_id}`);
    assert.deepEqual([a.result_status, a.result_request_id], ['COMPLETED', a.request_id]);

    // A failure in the engine: wait() raises InferenceFailed from the status body; the
    // record (job.result()) says why, and so does e.detail, which the SDK takes from the
    // status body's `error`.
    assert.equal(out.failed.class, 'InferenceFailed');
    assert.equal(out.failed.status_body?.status, 'FAILED');
    assert.equal(out.failed.record_error.code, 'engine_failed');
    assert.match(out.failed.record_error.message, /simulated internal error/);
    assert.match(JSON.stringify(out.failed.detail), /simulated internal error/);

    // CANCELLED is ours (contract §4), not one of the SDK's terminal states: its wait()
    // keeps polling to its deadline, while status() shows CANCELLED.
    assert.deepEqual([out.cancelled.cancel_answer.status, out.cancelled.cancel_answer.cancelled], ['CANCELLED', true]);
    assert.equal(out.cancelled.class, 'InferenceTimeout');
    assert.equal(out.cancelled.status_now, 'CANCELLED');

    // SegmindError: our status and the body's `error`, which names the field and why.
    assert.deepEqual(out.bad_param_sync, { class: 'SegmindError', status: 400, detail: out.bad_param_sync.detail });
    assert.match(String(out.bad_param_sync.detail), /^steps: .*100/);
    assert.deepEqual([out.unknown_param_sync.class, out.unknown_param_sync.status], ['SegmindError', 400]);
    assert.match(String(out.unknown_param_sync.detail), /^num_images: .*allowed fields: prompt/);
    assert.deepEqual([out.bad_param_async.class, out.bad_param_async.status], ['SegmindError', 400]);
    assert.match(String(out.bad_param_async.detail), /^steps: /);
    for (const r of [out.bad_key_sync, out.bad_key_async]) {
      assert.deepEqual([r.class, r.status], ['SegmindError', 401]);
      assert.equal(typeof r.detail, 'string');
      assert.ok(!String(r.detail).includes('kl_wrong'), 'the key is never echoed');
    }

    // Account, model, file, history and webhook calls have fixed Segmind URLs; base_url does not move them.
    for (const [call, url] of Object.entries(out.segmind_hosts)) {
      assert.ok(url !== null, `${call} sent nothing`);
      assert.match(new URL(url).hostname, /(^|\.)segmind\.com$/, `${call}: ${url}`);
    }
    assert.deepEqual(Object.keys(out.segmind_hosts), ['accounts.current', 'models.list', 'files.upload', 'generations.list', 'webhooks.get', 'pixelflows.run', 'finetune.list']);
  });
});
