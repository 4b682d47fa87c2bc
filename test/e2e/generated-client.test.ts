/**
 * A client generated from our own document: openapi-python-client (pinned in
 * test/clients/requirements.txt, installed into .test-services/clients/ by
 * scripts/setup-test-services.mjs, which `npm test` runs) generates a Python package from
 * GET /openapi.json of a running server (tiny engine, real HTTP), offline, and
 * test/clients/generated_client.py calls every operation of the document through it: the
 * image routes answer bytes that decode as images, JSON answers parse into the generated
 * models, errors into the error models, the event stream is read as text. An operation the
 * document gains and the script does not call fails the test. A missing venv fails it too.
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

const BIN = resolve(projectRoot(), '.test-services/clients/bin');
const SCRIPT = resolve(projectRoot(), 'test/clients/generated_client.py');
const run = promisify(execFile);

/**
 * The generator's settings. It takes one content type per status and knows JSON, text and
 * application/octet-stream; its documented content_type_overrides reads the image types as
 * octet-stream, so an image answer is bytes (a File) rather than parsed as JSON. post_hooks
 * off: no formatter run (the generated code is imported, not read).
 */
const GENERATOR_CONFIG = ['content_type_overrides:', '  image/png: application/octet-stream', '  image/jpeg: application/octet-stream', '  image/webp: application/octet-stream', 'post_hooks: []', ''].join('\n');

type Json = Record<string, any>;

describe('a Python client generated from /openapi.json', () => {
  let s: TestServer;
  let key: KeyInfo;
  let admin: KeyInfo;
  let dir: string;

  before(async () => {
    assert.ok(existsSync(join(BIN, 'openapi-python-client')), `${BIN}/openapi-python-client is missing: run node scripts/setup-test-services.mjs (npm test does)`);
    s = await startTestServer();
    key = s.createKey({ credits: '100', concurrency: 4 });
    admin = s.createKey({ credits: '0', admin: true });
    dir = mkdtempSync(join(tmpdir(), 'generated-client-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    return s?.close();
  });

  it('calls every operation of the document through the generated client', { timeout: 300_000 }, async () => {
    const doc = (await (await fetch(`${s.url}/openapi.json`)).json()) as Json;
    const operations = Object.entries(doc.paths as Record<string, Json>).flatMap(([path, ops]) =>
      Object.entries(ops as Record<string, Json>).map(([method, op]) => ({ path, method: method.toUpperCase(), id: op.operationId as string })),
    );
    writeFileSync(join(dir, 'openapi.json'), JSON.stringify(doc));
    writeFileSync(join(dir, 'config.yaml'), GENERATOR_CONFIG);
    const pkg = join(dir, 'klein_client');
    const gen = await run(join(BIN, 'openapi-python-client'), ['generate', '--path', join(dir, 'openapi.json'), '--output-path', pkg, '--meta', 'none', '--config', join(dir, 'config.yaml')], {
      env: { ...process.env, NO_PROXY: '*' },
    });
    // The generator warns for every part of the document it could not turn into code.
    assert.doesNotMatch(gen.stdout + gen.stderr, /Warning|Unable|Cannot|Unsupported/, gen.stdout + gen.stderr);

    const png = join(dir, 'ref.png');
    writeFileSync(png, await sharp({ create: { width: 96, height: 64, channels: 3, background: '#4488cc' } }).png().toBuffer());
    const { stdout } = await run(join(BIN, 'python'), [SCRIPT, pkg, s.url, key.key, admin.key, png], { env: { ...process.env, NO_PROXY: '*' }, maxBuffer: 16 * 1024 * 1024 });
    const out = JSON.parse(stdout) as { called: string[]; requests: Array<{ method: string; path: string }>; results: Json };

    // Every operation, called, and through its own route: each one's method and path template
    // matches a request the generated client sent.
    assert.deepEqual([...out.called].sort(), operations.map((o) => o.id).sort(), 'the operations called are not the operations of the document');
    for (const o of operations) {
      const template = new RegExp(`^${o.path.replace(/\{[^}]+\}/g, '[^/]+').replace(/\./g, '\\.')}$`);
      assert.ok(out.requests.some((r) => r.method === o.method && template.test(r.path)), `no request to ${o.method} ${o.path} (${o.id})`);
    }

    const r = out.results;
    assert.deepEqual([r.getHealth.class, r.getHealth.http, r.getHealth.status], ['Health', 200, 'READY']);
    assert.equal(r.getReadiness.class, 'ReadyCheck');
    assert.equal(r.getMetrics.has_help, true);
    assert.equal(r.getUserCredits.ok.class, 'Credits');
    assert.equal(r.getUserCredits.ok.account_id, key.account_id);
    assert.equal(r.getUserCredits.bearer.account_id, key.account_id, 'the Bearer scheme');
    assert.deepEqual([r.getUserCredits.wrong_key.class, r.getUserCredits.wrong_key.http, r.getUserCredits.wrong_key.code], ['Error', 401, 'unauthorized']);

    // Images are bytes, never parsed as JSON; JSON only when asked for (base64).
    const g = r.generate;
    assert.deepEqual([g.png.class, g.png.content_type, g.png.format, g.png.size], ['File', 'image/png', 'png', [64, 64]]);
    assert.deepEqual([g.jpeg.class, g.jpeg.content_type, g.jpeg.format], ['File', 'image/jpeg', 'jpeg']);
    assert.match(g.base64.content_type, /^application\/json/);
    assert.deepEqual([g.base64.class, g.base64.format, g.base64.size], ['GeneratedImage', 'png', [64, 64]]);
    assert.deepEqual([g.invalid.class, g.invalid.http, g.invalid.code, g.invalid.fields], ['Error', 400, 'validation_failed', ['steps']]);

    assert.deepEqual([r.submitRequest.class, r.submitRequest.status], ['Submitted', 'QUEUED']);
    const events = r.streamRequestEvents.events as Json[];
    assert.match(r.streamRequestEvents.content_type, /^text\/event-stream/);
    assert.deepEqual(events.at(-1), { event: 'completed', class: 'TerminalEvent', status: 'COMPLETED' });
    assert.ok(events.some((e) => e.event === 'progress' && e.class === 'ProgressEvent'), JSON.stringify(events));
    assert.deepEqual([r.getRequestStatus.class, r.getRequestStatus.status], ['Status', 'COMPLETED']);
    assert.deepEqual([r.getRequest.record.class, r.getRequest.record.status, r.getRequest.record.request_id], ['RequestRecord', 'COMPLETED', r.submitRequest.request_id]);
    assert.deepEqual([r.getRequest.unknown.class, r.getRequest.unknown.http, r.getRequest.unknown.code], ['Error', 404, 'not_found']);
    assert.deepEqual([r.getRequestOutput.class, r.getRequestOutput.content_type, r.getRequestOutput.format, r.getRequestOutput.size], ['File', 'image/png', 'png', [64, 64]]);
    assert.deepEqual([r.cancelRequest.class, r.cancelRequest.status, r.cancelRequest.cancelled], ['Cancellation', 'COMPLETED', false]);

    assert.deepEqual(r.createImage.images, [{ format: 'png', size: [64, 64] }]);
    assert.deepEqual([r.createImage.too_many.class, r.createImage.too_many.http, r.createImage.too_many.param, r.createImage.too_many.code], ['OpenAiError', 400, 'n', 'validation_failed']);
    assert.deepEqual(r.createImageEdit.images, [{ format: 'png', size: [64, 64] }]);
    assert.ok(r.listModels.ids.includes('flux-2-klein-4b'), String(r.listModels.ids));
    // The served model's entry parses with its variant and defaults (the tiny model's files
    // read as distilled, whose defaults are 20 steps: contract/models.ts).
    const served = (r.listModels.models as Json[]).find((e) => e.id === 'flux-2-klein-4b');
    assert.deepEqual(served && [served.slug, served.variant, served.steps], ['flux-2-klein-4b', 'distilled', 20], JSON.stringify(r.listModels.models));
    assert.deepEqual([r.retrieveModel.ok.id, r.retrieveModel.ok.object, r.retrieveModel.ok.slug], ['gpt-image-1', 'model', 'flux-2-klein-4b']);
    assert.deepEqual([r.retrieveModel.ok.variant, r.retrieveModel.ok.defaults.steps], ['distilled', 20]);
    assert.deepEqual([r.retrieveModel.slug.id, r.retrieveModel.slug.slug, r.retrieveModel.slug.variant, r.retrieveModel.slug.steps], ['flux-2-klein-4b', 'flux-2-klein-4b', 'distilled', 20]);
    assert.deepEqual([r.retrieveModel.unknown.class, r.retrieveModel.unknown.http, r.retrieveModel.unknown.code], ['OpenAiError', 404, 'not_found']);

    assert.ok(r.listAccounts.ids.includes(key.account_id));
    assert.deepEqual([r.listAccounts.not_admin.class, r.listAccounts.not_admin.http, r.listAccounts.not_admin.code], ['Error', 403, 'forbidden']);
    assert.deepEqual([r.grantCredits.class, r.grantCredits.account_id], ['CreditBalance', key.account_id]);
    assert.deepEqual([r.getAccountUsage.class, r.getAccountUsage.account_id], ['Usage', key.account_id]);
    assert.ok(r.getAccountUsage.settled_requests >= 5, String(r.getAccountUsage.settled_requests));

    const c = r.createKey;
    assert.deepEqual([c.class, c.http, c.models, c.credits, c.name, c.admin, c.key_shape], ['CreatedKey', 201, ['flux-2-klein-4b'], '1.5', 'generated', false, true]);
    assert.deepEqual([c.unserved.class, c.unserved.http, c.unserved.code, c.unserved.fields], ['Error', 400, 'validation_failed', ['models']]);
    assert.deepEqual(r.listKeys.created, { models: ['flux-2-klein-4b'], status: 'active', name: 'generated' });
    // The two keys made here and the created one: the refused call created nothing.
    assert.equal(r.listKeys.count, 3);
    assert.deepEqual([r.listKeys.not_admin.class, r.listKeys.not_admin.http, r.listKeys.not_admin.code], ['Error', 403, 'forbidden']);

    assert.deepEqual([r.getOpenApiDocument.openapi, r.getOpenApiDocument.operations], ['3.1.0', operations.map((o) => o.id).sort()]);
    assert.deepEqual([r.getDocsPage.swagger_ui, r.getIndexPage.html, r.getPlaygroundPage.html], [true, true, true]);
    assert.match(r.getPlaygroundFile.content_type, /^text\/css/);
    assert.deepEqual([r.getPlaygroundFile.missing.http, r.getPlaygroundFile.missing.code], [404, 'not_found']);
  });
});
