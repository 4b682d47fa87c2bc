// Installs what the test suite runs for real besides the engine, so that `npm test` alone
// works on a fresh machine:
// - from Debian's packages, when missing: redis-server and PostgreSQL (the store and fleet
//   suites start private instances on loopback) and Chromium (the playground's browser
//   tests); with sudo when not root;
// - from PyPI, pinned, each in its own virtual environment under .test-services/: an
//   S3-compatible server (moto's standalone server) and the Python clients the
//   compatibility tests call the server with (test/clients/requirements.txt).
// Idempotent; apt's and pip's caches make a second run fast.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const run = (cmd, args, env = process.env) => {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
  return r.status === 0;
};
const must = (cmd, args) => {
  if (!run(cmd, args)) {
    console.error(`setup-test-services: ${cmd} ${args.join(' ')} failed`);
    process.exit(1);
  }
};

const onPath = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const hasPostgres = () => {
  try {
    return readdirSync('/usr/lib/postgresql').some((v) => existsSync(`/usr/lib/postgresql/${v}/bin/initdb`));
  } catch {
    return false;
  }
};
const need = [
  ...(onPath('redis-server') ? [] : ['redis-server']),
  ...(hasPostgres() ? [] : ['postgresql']),
  ...(existsSync('/usr/bin/chromium') ? [] : ['chromium']),
];
if (need.length > 0) {
  console.error(`setup-test-services: installing ${need.join(', ')} from Debian's packages`);
  const asRoot = process.getuid?.() === 0 ? [] : ['sudo'];
  const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (...args) => (asRoot.length ? run('sudo', ['-E', 'apt-get', ...args], aptEnv) : run('apt-get', args, aptEnv));
  const install = ['install', '-y', '--no-install-recommends', ...need];
  // The package lists may be missing or stale on a fresh machine: update once and retry.
  if (!apt(...install) && !(apt('update') && apt(...install))) {
    console.error(`setup-test-services: could not install ${need.join(', ')} (apt-get${asRoot.length ? ' with sudo' : ''})`);
    process.exit(1);
  }
}

const root = new URL('..', import.meta.url).pathname;
const venvs = {
  // moto's standalone server: the S3-compatible store of the storage tests.
  moto: ['moto[server]==5.2.5'],
  // The Python clients the compatibility tests drive (openai, Segmind's SDK, Standard Webhooks, …).
  clients: ['-r', join(root, 'test', 'clients', 'requirements.txt')],
};
for (const [name, spec] of Object.entries(venvs)) {
  const venv = join(root, '.test-services', name);
  const stamp = join(venv, '.klein-stamp');
  const want = spec.map((s) => (s.endsWith('.txt') ? readFileSync(s, 'utf8') : s)).join('\n');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) continue;
  if (!existsSync(join(venv, 'bin', 'python'))) must(process.env.PYTHON ?? 'python3', ['-m', 'venv', venv]);
  must(join(venv, 'bin', 'python'), ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', ...spec]);
  writeFileSync(stamp, want);
}
