// Runs every TypeScript test file with node's built-in test runner (Node 20 has no glob
// support in `node --test`, so the files are listed here). Pass paths to run a subset.
//
// Before the tests it starts the run's private PostgreSQL on loopback
// (test/support/services-main.ts) and hands its URL to every test file through
// KLEIN_TEST_DATABASE_URL; it stops when the run ends. (The fleet tests start their own
// Redis servers.) It compiles the playground's page script once, so no two browser suites
// compile it at the same time (KLEIN_TEST_WEB_BUILT tells them it is done).
//
// Files run KLEIN_TEST_JOBS at a time (default 2), each in its own `node --test` process,
// the slowest kinds first: most of a suite's time is spent waiting on servers, engines and
// clients, and no two suites share a port, a directory or a database. Each file's output is
// printed whole when it ends, so files never interleave; the totals and every failure are
// repeated at the end.
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

// Suites that start servers, engines and browsers first, unit tests last, so the pool's
// last minutes are short files on every lane.
function weight(file) {
  if (file.includes('test/e2e/crash')) return 5;
  if (/test\/(e2e|distributed)\//.test(file)) return 3;
  if (file.includes('test/browser/')) return 2;
  return file.startsWith('test/') ? 1 : 0;
}

const args = process.argv.slice(2);
const files = (args.length > 0 ? args : [...find('src', []), ...find('test', [])].sort()).sort((a, b) => weight(b) - weight(a));
const jobs = Math.max(1, Number(process.env.KLEIN_TEST_JOBS ?? 2) || 1);

if (files.some((f) => f.includes('test/browser/'))) {
  const web = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'web/tsconfig.json'], { encoding: 'utf8' });
  if (web.status !== 0) {
    console.error(`run-ts-tests: the page script does not compile:\n${web.stdout}${web.stderr}`);
    process.exit(1);
  }
}

const services = spawn(process.execPath, ['--import', 'tsx', 'test/support/services-main.ts'], { stdio: ['pipe', 'pipe', 'inherit'] });
const first = await new Promise((resolve, reject) => {
  services.once('exit', (code) => reject(new Error(`the test services did not start (exit ${code})`)));
  createInterface({ input: services.stdout }).once('line', resolve);
}).catch((err) => {
  console.error(`run-ts-tests: ${err.message}`);
  process.exit(1);
});
const { databaseUrl } = JSON.parse(first);
const env = { ...process.env, KLEIN_TEST_DATABASE_URL: databaseUrl, KLEIN_TEST_WEB_BUILT: '1' };

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code, signal) => resolve({ file, code: code ?? (signal ? 1 : 0), out, s: (Date.now() - started) / 1000 }));
  });
}

const totals = { tests: 0, suites: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
const failed = [];
const queue = [...files];
async function lane() {
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    const r = await runFile(file);
    process.stdout.write(`\n# ${r.file} (${r.s.toFixed(1)} s${r.code === 0 ? '' : `, exit ${r.code}`})\n${r.out}`);
    for (const m of r.out.matchAll(/^ℹ (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) totals[m[1]] += Number(m[2]);
    if (r.code !== 0) failed.push(r);
  }
}
const started = Date.now();
await Promise.all(Array.from({ length: Math.min(jobs, files.length) }, lane));
services.stdin.end();
await new Promise((resolve) => services.once('exit', resolve));

console.log(`\n# ${files.length} files, ${jobs} at a time, ${((Date.now() - started) / 60_000).toFixed(1)} min`);
for (const [k, v] of Object.entries(totals)) console.log(`ℹ ${k} ${v}`);
for (const r of failed) {
  const at = r.out.indexOf('✖ failing tests:');
  console.log(`\n✖ ${r.file} failed (exit ${r.code})${at >= 0 ? `\n${r.out.slice(at)}` : `; its last output:\n${r.out.slice(-3000)}`}`);
}
process.exit(failed.length > 0 ? 1 : 0);
