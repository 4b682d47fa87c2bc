/**
 * Compiles the page script (web/src → dist/web, web/tsconfig.json) as `npm run build`
 * does, so the playground tests always serve the current source. The full run
 * (scripts/run-ts-tests.mjs) compiles it once before any suite starts and says so with
 * KLEIN_TEST_WEB_BUILT, so suites running side by side never rewrite it under each other.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const root = new URL('../..', import.meta.url).pathname;

export function buildWebScript(): void {
  if (process.env.KLEIN_TEST_WEB_BUILT === '1') return;
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'web/tsconfig.json')], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `web build failed:\n${tsc.stdout}${tsc.stderr}`);
}
