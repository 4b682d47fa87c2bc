// Runs every TypeScript test file with node's built-in test runner (Node 20 has no glob
// support in `node --test`, so the files are listed here). Pass paths to run a subset.
//
// Before the tests it starts the run's private PostgreSQL on loopback
// (test/support/services-main.ts) and hands its URL to every test file through
// KLEIN_TEST_DATABASE_URL; it stops when the run ends. (The fleet tests start their own
// Redis servers.)
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

function find(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
const files = args.length > 0 ? args : [...find('src', []), ...find('test', [])].sort();

const services = spawn(process.execPath, ['--import', 'tsx', 'test/support/services-main.ts'], { stdio: ['pipe', 'pipe', 'inherit'] });
const first = await new Promise((resolve, reject) => {
  services.once('exit', (code) => reject(new Error(`the test services did not start (exit ${code})`)));
  createInterface({ input: services.stdout }).once('line', resolve);
}).catch((err) => {
  console.error(`run-ts-tests: ${err.message}`);
  process.exit(1);
});
const { databaseUrl } = JSON.parse(first);

const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { stdio: 'inherit', env: { ...process.env, KLEIN_TEST_DATABASE_URL: databaseUrl } },
);
services.stdin.end();
await new Promise((resolve) => services.once('exit', resolve));
process.exit(r.status ?? 1);
