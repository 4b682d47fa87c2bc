// Installs what the test suite runs for real besides the engine: an S3-compatible server
// (moto's standalone server, from PyPI, pinned) in its own virtual environment under
// .test-services/. Idempotent; pip's cache makes a fresh clone fast.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const venv = join(root, '.test-services', 'moto');
const want = 'moto[server]==5.2.5';
const stamp = join(venv, '.klein-stamp');

if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) process.exit(0);
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    console.error(`setup-test-services: ${cmd} ${args.join(' ')} failed`);
    process.exit(1);
  }
};
if (!existsSync(join(venv, 'bin', 'python'))) run(process.env.PYTHON ?? 'python3', ['-m', 'venv', venv]);
run(join(venv, 'bin', 'python'), ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', want]);
writeFileSync(stamp, want);
