/**
 * Compiles the page script (web/src → dist/web, web/tsconfig.json) as `npm run build`
 * does, so the playground tests always serve the current source.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const root = new URL('../..', import.meta.url).pathname;

export function buildWebScript(): void {
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'web/tsconfig.json')], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `web build failed:\n${tsc.stdout}${tsc.stderr}`);
}
