/**
 * Real PostgreSQL and Redis servers for the tests, started privately on loopback from
 * Debian's packages (`.ci/run` installs them): each in its own temporary directory, on a
 * free port, stopped with the process that started them. Nothing is shared with other
 * runs or with services the machine may already have.
 *
 * `scripts/run-ts-tests.mjs` starts one PostgreSQL for the whole run (through
 * `services-main.ts`; the store suites each take a fresh database on it) and passes its URL
 * in KLEIN_TEST_DATABASE_URL; a test file run on its own starts its own on first use.
 * Redis servers are started per test stack (test/distributed/stack.ts): the outage test
 * stops its own.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

const INSTALL_HINT = 'install them as .ci/run does: apt-get install redis-server postgresql';

export interface Service {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export interface RedisService extends Service {
  /** The server process now running (tests stop and start it to simulate an outage). */
  process: ChildProcess;
  /** Stops the server but keeps its data directory, so `restart()` brings the same data back. */
  halt(): Promise<void>;
  /** Starts the server again on the same port and data directory after `halt()`. */
  restart(): Promise<void>;
}

/** A free TCP port on loopback (bound, read, released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} at start:\n${log()}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${timeoutMs} ms:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill(signal);
  });
}

function postgresBin(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error(`PostgreSQL is not installed (no ${base}/*/bin/initdb): ${INSTALL_HINT}`);
  return join(base, versions[0], 'bin');
}

/** PostgreSQL refuses to run as root: as root, run its programs as the `postgres` user. */
function asPostgresUser(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

/**
 * A private PostgreSQL cluster: trust authentication on 127.0.0.1 only, durability off
 * (fsync, synchronous_commit) since it is thrown away. `url` points at the `postgres`
 * database as the `postgres` superuser.
 */
export async function startPostgres(): Promise<Service> {
  const bin = postgresBin();
  const dir = mkdtempSync(join(tmpdir(), 'klein-pg-'));
  if (process.getuid?.() === 0) {
    const pw = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    chownSync(dir, Number(pw.stdout.trim()), Number(gid.stdout.trim()));
  }
  const data = join(dir, 'data');
  const [initCmd, initArgs] = asPostgresUser(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
  const init = spawnSync(initCmd, initArgs, { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
  const port = await freePort();
  const [cmd, args] = asPostgresUser(join(bin, 'postgres'), [
    '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300',
  ]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-4000)));
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await waitFor('postgres', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.end();
    return true;
  }, 30_000, child, () => log);
  return {
    url,
    port,
    async stop() {
      await stopChild(child, 'SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A private Redis server on loopback, append-only file on (as BullMQ recommends). */
export async function startRedis(opts: { port?: number } = {}): Promise<RedisService> {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error) throw new Error(`redis-server is not installed: ${INSTALL_HINT}`);
  const dir = mkdtempSync(join(tmpdir(), 'klein-redis-'));
  const port = opts.port ?? (await freePort());
  const launch = async (): Promise<ChildProcess> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--daemonize', 'no'];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const keep = (d: string) => (log = (log + d).slice(-4000));
    child.stdout?.setEncoding('utf8').on('data', keep);
    child.stderr?.setEncoding('utf8').on('data', keep);
    await waitFor('redis-server', async () => log.includes('Ready to accept connections'), 15_000, child, () => log);
    return child;
  };
  const svc: RedisService = {
    url: `redis://127.0.0.1:${port}`,
    port,
    process: await launch(),
    halt: () => stopChild(svc.process),
    async restart() {
      svc.process = await launch();
    },
    async stop() {
      await stopChild(svc.process);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return svc;
}

let sharedPg: Promise<Service> | null = null;

function stopAtExit(p: Promise<Service>): void {
  const stop = () => void p.then((s) => s.stop()).catch(() => undefined);
  process.once('beforeExit', stop);
}

/** The run's PostgreSQL (KLEIN_TEST_DATABASE_URL), or one started for this process. */
export async function testPostgresUrl(): Promise<string> {
  const env = process.env.KLEIN_TEST_DATABASE_URL;
  if (env) return env;
  if (!sharedPg) {
    sharedPg = startPostgres();
    stopAtExit(sharedPg);
  }
  return (await sharedPg).url;
}

/** A fresh, empty database on the test cluster; `drop()` removes it. */
export async function freshPostgresDatabase(prefix = 'klein_t'): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = await testPostgresUrl();
  const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(`create database ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(admin);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const d = new pg.Client({ connectionString: admin });
      await d.connect();
      try {
        await d.query(`drop database if exists ${name} with (force)`);
      } finally {
        await d.end();
      }
    },
  };
}
