/** The OpenAPI document validates as OpenAPI 3.1 and describes every route the server has. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { loadConfig } from '../src/config.js';
import { buildServer } from '../src/compose/server.js';
import { openApiPath } from '../src/gateway/openapi.js';

it('validates, and lists every route of the server (and nothing else)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'klein-openapi-'));
  const env = { ...process.env, KLEIN_DATA_DIR: dir, KLEIN_MODEL: 'simulated', KLEIN_LOG_LEVEL: 'silent' };
  const s = await buildServer(loadConfig(env), env);
  try {
    await s.app.ready();
    const res = await s.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json() as { openapi: string; paths: Record<string, Record<string, unknown>> };
    const v = await new Validator().validate(doc);
    assert.ok(v.valid, String(JSON.stringify(v.errors ?? null)).slice(0, 2000));
    assert.equal(doc.openapi, '3.1.0');
    const served = new Set(s.app.registeredRoutes.map((r) => `${r.method} ${openApiPath(r.url)}`));
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
    assert.deepEqual([...served].filter((r) => !documented.has(r)), [], 'routes missing from the document');
    assert.deepEqual([...documented].filter((r) => !served.has(r)), [], 'documented routes the server lacks');
    const docs = await s.app.inject({ method: 'GET', url: '/docs' });
    assert.equal(docs.statusCode, 200);
    assert.match(docs.body, /\/v2\/requests\/\{id\}\/events/);
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
