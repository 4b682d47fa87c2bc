/**
 * The OpenAPI document validates as OpenAPI 3.1, describes every route the server has, and
 * is generated from the routes' own schemas: every operation has its id, tags, summary and
 * error responses, the named schemas are the contract's, and the status and error-code
 * lists are the server's own.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { loadConfig } from '../src/config.js';
import { buildServer, type BuiltServer } from '../src/compose/server.js';
import { DOCS_PREFIX, openApiPath, withEnums } from '../src/gateway/openapi.js';
import { RequestRecord } from '../src/contract/responses.js';
import { ERRORS } from '../src/contract/errors.js';
import { REQUEST_STATUSES } from '../src/contract/request-states.js';
import { AsyncBody, GenerateBody } from '../src/contract/request-schema.js';

type Json = Record<string, any>;

describe('GET /openapi.json', () => {
  let dir: string;
  let s: BuiltServer;
  let doc: Json;
  const operations = () => Object.entries(doc.paths as Record<string, Json>).flatMap(([path, ops]) => Object.entries(ops as Record<string, Json>).map(([method, op]) => ({ path, method, op })));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'klein-openapi-'));
    const env = { ...process.env, KLEIN_DATA_DIR: dir, KLEIN_MODEL: 'simulated', KLEIN_LOG_LEVEL: 'silent' };
    s = await buildServer(loadConfig(env), env);
    await s.app.ready();
    const res = await s.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    doc = res.json() as Json;
  });
  after(async () => {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('validates, and lists every route of the server (and nothing else)', async () => {
    const v = await new Validator().validate(doc);
    assert.ok(v.valid, String(JSON.stringify(v.errors ?? null)).slice(0, 2000));
    assert.equal(doc.openapi, '3.1.0');
    // The reference page's own files (Swagger UI's scripts, styles and its copy of this
    // document) are under /docs/ and are not API operations; /docs itself is.
    const uiFiles = (r: string) => r.startsWith(`GET ${DOCS_PREFIX}/`);
    const served = new Set(s.app.registeredRoutes.map((r) => `${r.method} ${openApiPath(r.url)}`).filter((r) => !uiFiles(r)));
    const documented = new Set(operations().map(({ path, method }) => `${method.toUpperCase()} ${path}`));
    assert.deepEqual([...served].filter((r) => !documented.has(r)), [], 'routes missing from the document');
    assert.deepEqual([...documented].filter((r) => !served.has(r)), [], 'documented routes the server lacks');
    assert.deepEqual([...documented].filter(uiFiles), [], "the page's files are not operations");
  });

  it('serves the reference page (Swagger UI) from its package, reading this document', async () => {
    const page = await s.app.inject({ method: 'GET', url: '/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.body, /<script src="\/docs\/static\/swagger-ui-bundle\.js"/);
    const csp = String(page.headers['content-security-policy']);
    for (const directive of ["default-src 'self'", "script-src 'self'", "connect-src 'self'"]) assert.ok(csp.includes(directive), csp);
    const bundle = await s.app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' });
    assert.equal(bundle.statusCode, 200);
    assert.ok(bundle.body.length > 100_000, 'the bundle is the package file');
    const init = await s.app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
    assert.match(init.body, /"persistAuthorization":true/);
    const copy = await s.app.inject({ method: 'GET', url: '/docs/json' });
    assert.deepEqual(copy.json(), doc, 'the page reads the same document');
  });

  it('writes every union of constants also as an enum, and leaves single constants alone', () => {
    const record = doc.components.schemas.RequestRecord.properties.status;
    assert.deepEqual(record.enum, [...REQUEST_STATUSES]);
    assert.equal(record.type, 'string');
    assert.deepEqual(doc.components.schemas.GeneratedImage.properties.format.enum, ['png', 'jpeg', 'webp']);
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (typeof node !== 'object' || node === null) return;
      const n = node as Json;
      if (Array.isArray(n.anyOf) && n.anyOf.length > 1 && n.anyOf.every((m: Json) => 'const' in m)) {
        assert.deepEqual(n.enum, n.anyOf.map((m: Json) => m.const), JSON.stringify(n).slice(0, 200));
      }
      Object.values(n).forEach(walk);
    };
    walk(doc);
    // The validator's own schemas are untouched (the document is a copy).
    assert.equal((RequestRecord.properties.status as Json).enum, undefined);
    assert.deepEqual(withEnums({ anyOf: [{ const: 1 }, { type: 'string' }] }), { anyOf: [{ const: 1 }, { type: 'string' }] });
  });

  it('gives every operation a unique operationId, tags and a summary', () => {
    const ids = operations().map(({ op }) => op.operationId as string);
    for (const { path, method, op } of operations()) {
      assert.match(String(op.operationId), /^[a-z][A-Za-z]+$/, `${method} ${path}`);
      assert.ok(Array.isArray(op.tags) && op.tags.length > 0, `${method} ${path} has no tag`);
      assert.ok(typeof op.summary === 'string' && op.summary.length > 0, `${method} ${path} has no summary`);
    }
    assert.equal(new Set(ids).size, ids.length, `duplicate operationIds: ${ids.join(', ')}`);
    const tags = new Set((doc.tags as Json[]).map((t) => t.name));
    for (const { op } of operations()) for (const t of op.tags as string[]) assert.ok(tags.has(t), `tag ${t} is not described`);
  });

  it('answers every error in the envelope, naming the codes of each status', () => {
    for (const { path, method, op } of operations()) {
      for (const [status, response] of Object.entries(op.responses as Record<string, Json>)) {
        // /health/ready's 503 is its state (not ready), not an error.
        if (Number(status) < 400 || (path === '/health/ready' && status === '503')) continue;
        // The OpenAI-compatible routes answer in OpenAI's envelope (contract §8), every other in ours.
        const envelope = (op.tags as string[]).includes('openai') ? 'OpenAiError' : 'Error';
        assert.deepEqual(response.content?.['application/json']?.schema, { $ref: `#/components/schemas/${envelope}` }, `${method} ${path} ${status}`);
        const codes = String(response.description).split(', ');
        for (const code of codes) assert.equal(ERRORS[code as keyof typeof ERRORS]?.status, Number(status), `${method} ${path}: ${code} is not a ${status}`);
      }
    }
    const openAi = doc.components.schemas.OpenAiError;
    assert.deepEqual(openAi.required, ['error']);
    assert.deepEqual(openAi.properties.error.required, ['message', 'type', 'param', 'code']);
    assert.ok(doc.paths['/v1/images/generations'].post.responses['400'].content['application/json'].schema.$ref.endsWith('/OpenAiError'));
    const envelope = doc.components.schemas.Error;
    assert.deepEqual(envelope.required, ['error', 'code', 'request_id']);
    assert.deepEqual(envelope.properties.code.enum, Object.keys(ERRORS));
    assert.deepEqual(Object.keys(envelope.properties.details.items.properties), ['field', 'message']);
    assert.deepEqual(Object.keys(doc.paths['/v1/flux-2-klein-4b'].post.responses).sort(), ['200', '400', '401', '403', '404', '406', '408', '409', '413', '422', '429', '500', '502', '503', '504']);
    assert.ok(doc.paths['/v1/flux-2-klein-4b'].post.responses['429'].headers['retry-after']);
  });

  it('publishes the request bodies and the answers as named schemas, the status list once', () => {
    const schemas = doc.components.schemas as Json;
    assert.deepEqual(Object.keys(schemas.GenerateBody.properties), Object.keys(GenerateBody.properties));
    assert.deepEqual(Object.keys(schemas.AsyncBody.properties), Object.keys(AsyncBody.properties));
    for (const name of ['OpenAiImagesBody', 'OpenAiEditsForm', 'Submitted', 'Status', 'RequestRecord', 'Cancellation', 'GeneratedImage', 'Credits', 'OpenAiImagesResponse', 'QueuedEvent', 'ProgressEvent', 'TerminalEvent', 'AccountList', 'CreditGrant', 'CreditBalance', 'Usage', 'Health', 'ReadyCheck']) {
      assert.ok(schemas[name], `components.schemas.${name}`);
    }
    for (const name of ['Submitted', 'Status', 'RequestRecord', 'Cancellation', 'TerminalEvent']) {
      assert.deepEqual(schemas[name].properties.status.anyOf.map((m: Json) => m.const), [...REQUEST_STATUSES], name);
    }
    const ref = (s: string) => ({ $ref: `#/components/schemas/${s}` });
    const post = (path: string) => doc.paths[path].post;
    assert.deepEqual(post('/v1/flux-2-klein-4b').requestBody.content['application/json'].schema, ref('GenerateBody'));
    assert.deepEqual(post('/v2/flux-2-klein-4b').requestBody.content['application/json'].schema, ref('AsyncBody'));
    assert.deepEqual(post('/v1/images/generations').requestBody.content['application/json'].schema, ref('OpenAiImagesBody'));
    assert.deepEqual(post('/v1/images/edits').requestBody.content['multipart/form-data'].schema, ref('OpenAiEditsForm'));
    assert.deepEqual(post('/v1/flux-2-klein-4b').responses['200'].content['application/json'].schema, ref('GeneratedImage'));
    assert.deepEqual(Object.keys(post('/v1/flux-2-klein-4b').responses['200'].content).sort(), ['application/json', 'image/jpeg', 'image/png', 'image/webp']);
    assert.deepEqual(post('/v2/flux-2-klein-4b').responses['200'].content['application/json'].schema, ref('Submitted'));
    assert.deepEqual(doc.paths['/v2/requests/{id}'].get.responses['200'].content['application/json'].schema, ref('RequestRecord'));
    assert.deepEqual(doc.paths['/v2/requests/{id}/status'].get.responses['200'].content['application/json'].schema, ref('Status'));
    assert.ok(doc.paths['/v2/requests/{id}/events'].get.responses['200'].content['text/event-stream']);
  });

  it('keeps the security schemes, parameters and headers clients rely on', () => {
    assert.deepEqual(doc.components.securitySchemes, { ApiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' }, Bearer: { type: 'http', scheme: 'bearer' } });
    const sync = doc.paths['/v1/flux-2-klein-4b'].post;
    assert.deepEqual(sync.security, [{ ApiKey: [] }, { Bearer: [] }]);
    const params = new Map((sync.parameters as Json[]).map((p) => [`${p.in} ${p.name}`, p]));
    assert.equal([...params.keys()].filter((k) => k.startsWith('path ')).length, 0, "a model's route names its model in its path");
    assert.equal(params.get('header idempotency-key')?.schema.maxLength, 255);
    const headers = Object.keys(sync.responses['200'].headers);
    for (const h of ['x-request-id', 'x-seed-value', 'x-generation-time', 'x-cost', 'x-remaining-credits', 'x-rate-limit-remaining', 'x-rate-limit-reset-at-utc']) assert.ok(headers.includes(h), h);
    const query = (path: string) => (doc.paths[path].get.parameters as Json[]).filter((p) => p.in === 'query').map((p) => [p.name, p.schema.type]);
    // Named here: the ones clients rely on; other query parameters (signed links' expires
    // and sig) may join them, all optional.
    assert.deepEqual(query('/v2/requests/{id}')[0], ['base64', 'boolean']);
    assert.ok(query('/v2/requests/{id}/events').some(([name, type]) => name === 'preview' && type === 'boolean'));
    for (const path of ['/v2/requests/{id}', '/v2/requests/{id}/events', '/v2/requests/{id}/output']) {
      for (const p of doc.paths[path].get.parameters as Json[]) if (p.in === 'query') assert.notEqual(p.required, true, `${path} ?${p.name} is optional`);
    }
    assert.equal(doc.paths['/health'].get.security, undefined, 'health needs no key');
  });
});
