/**
 * The official `openai` Python package (pinned in test/clients/requirements.txt, installed
 * into .test-services/clients/ by scripts/setup-test-services.mjs, which `npm test` runs)
 * against this server (tiny engine, real HTTP), through test/clients/openai_client.py: it
 * generates and edits with OpenAI model names (contract §8 default aliases), lists the
 * models, and its exceptions carry the reason, the field and our code. A missing venv
 * fails the test rather than skipping it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { projectRoot } from '../../src/config.js';
import { startTestServer, type KeyInfo, type TestServer } from './harness.js';

const PYTHON = resolve(projectRoot(), '.test-services/clients/bin/python');
const SCRIPT = resolve(projectRoot(), 'test/clients/openai_client.py');

interface Raised {
  class: string | null;
  str: string;
  status_code: number;
  type: string | null;
  param: string | null;
  code: string | null;
  request_id: string | null;
}

describe('OpenAI-compatible routes with the openai Python package', () => {
  let s: TestServer;
  let key: KeyInfo;
  let dir: string;

  before(async () => {
    assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run node scripts/setup-test-services.mjs (npm test does)`);
    s = await startTestServer();
    key = s.createKey({ credits: '100', concurrency: 4 });
    dir = mkdtempSync(join(tmpdir(), 'openai-py-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    return s?.close();
  });

  it('generates and edits with OpenAI model names, lists the models, and raises with the reason', async () => {
    const png = join(dir, 'ref.png');
    writeFileSync(png, await sharp({ create: { width: 192, height: 128, channels: 3, background: '#4488cc' } }).png().toBuffer());
    const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, s.url, key.key, png], { env: { ...process.env, NO_PROXY: '*' }, maxBuffer: 16 * 1024 * 1024 });
    const out = JSON.parse(stdout) as Record<string, unknown> & { too_many: Raised; unknown_model: Raised; unknown_model_retrieve: Raised; bad_key: Raised };

    assert.deepEqual(out.generate, { n: 1, size: [256, 256] });
    // size auto follows the reference's 3:2.
    const [w, h] = (out.edit as { size: [number, number] }).size;
    assert.ok(Math.abs(w / h - 1.5) < 0.02, `${w}x${h}`);
    assert.deepEqual(out.models, ['flux-2-klein-4b', 'gpt-image-1', 'dall-e-3', 'dall-e-2']);
    const m = out.retrieve as { id: string; object: string; created: number; owned_by: string };
    assert.deepEqual([m.id, m.object, m.owned_by], ['gpt-image-1', 'model', 'black-forest-labs']);
    assert.ok(Number.isInteger(m.created) && m.created > 1_700_000_000, String(m.created));

    // str(e) carries the message, not just "Error code: 400"; param and code are set.
    assert.equal(out.too_many.class, 'BadRequestError');
    assert.match(out.too_many.str, /^Error code: 400 - .*n: /);
    assert.deepEqual([out.too_many.status_code, out.too_many.type, out.too_many.param, out.too_many.code], [400, 'invalid_request_error', 'n', 'validation_failed']);
    assert.match(out.too_many.request_id ?? '', /^[0-9a-f-]{36}$/);
    assert.deepEqual([out.unknown_model.class, out.unknown_model.param, out.unknown_model.code], ['BadRequestError', 'model', 'validation_failed']);
    assert.deepEqual([out.unknown_model_retrieve.class, out.unknown_model_retrieve.status_code, out.unknown_model_retrieve.code], ['NotFoundError', 404, 'not_found']);
    assert.deepEqual([out.bad_key.class, out.bad_key.type, out.bad_key.code, out.bad_key.param], ['AuthenticationError', 'authentication_error', 'unauthorized', null]);
  });
});
