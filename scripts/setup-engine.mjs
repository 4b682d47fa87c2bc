// Creates the engine's project-local Python environment (engine/.venv) and installs the
// pinned dependencies with uv. Idempotent: a stamp holding the lock file's hash skips the
// work when nothing changed. uv's cache (~/.cache/uv) makes reinstalls on a fresh clone fast.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const venv = join(root, 'engine', '.venv');
const python = join(venv, 'bin', 'python');
const uv = join(venv, 'bin', 'uv');
const lock = join(root, 'engine', 'requirements.lock');
const stamp = join(venv, '.klein-stamp');
const UV_VERSION = '0.13.8';

function run(cmd, args) {
  console.error(`setup-engine: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    console.error(`setup-engine: failed (${cmd} exited ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

const want = createHash('sha256')
  .update(readFileSync(lock))
  .update(readFileSync(join(root, 'engine', 'pyproject.toml')))
  .digest('hex');
if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want && existsSync(python)) {
  process.exit(0);
}
const systemPython = process.env.PYTHON ?? 'python3';
if (!existsSync(python)) run(systemPython, ['-m', 'venv', venv]);
if (!existsSync(uv)) run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', `uv==${UV_VERSION}`]);
run(uv, ['pip', 'sync', '--python', python, lock]);
run(uv, ['pip', 'install', '--python', python, '--no-deps', '-e', join(root, 'engine')]);
writeFileSync(stamp, want);
