/**
 * The real `klein serve` as a process of its own, for the tests that kill it (crash.test.ts)
 * or time it (hostile-input.test.ts's default timeouts): an in-process server shares its
 * event loop with the test, whose synchronous calls (the CLI run by `createKey`, a sibling
 * suite's work) would delay its timers.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../support/services.js';
import type { KeyInfo } from './harness.js';

const run = promisify(execFile);

const root = new URL('../..', import.meta.url).pathname;
const MAIN = join(root, 'src/cli/main.ts');

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  /** The last 20 kB of its output. */
  log: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * A key made by `klein keys create` on the server's data directory and database. Run
   * asynchronously: the harness's synchronous run would stop this process's event loop for
   * the CLI's start-up, and with it every suite running beside this one.
   */
  createKey(opts?: { credits?: string }): Promise<KeyInfo>;
  /** SIGTERM, then SIGKILL after 20 s. */
  stop(): Promise<void>;
}

/** Starts `klein serve` on a free loopback port with `env` over this process's; waits for READY. */
export async function startServeProcess(env: Record<string, string>, readyTimeoutMs = 120_000): Promise<ServeProcess> {
  const port = await freePort();
  const fullEnv = { ...process.env, HOST: '127.0.0.1', PORT: String(port), KLEIN_LOG_LEVEL: 'warn', ...env };
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: fullEnv });
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString('utf8')).slice(-20_000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the server exited at start:\n${out}`);
    const h = await fetch(`${url}/health`).then((r) => r.json() as Promise<{ status: string }>).catch(() => null);
    if (h?.status === 'READY') break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the server was not ready in time:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    log: () => out,
    exited,
    async createKey(opts = {}) {
      const r = await run(process.execPath, ['--import', 'tsx', MAIN, 'keys', 'create', '--credits', opts.credits ?? '1000', '--json'], { env: fullEnv, cwd: root, encoding: 'utf8' });
      return JSON.parse(r.stdout) as KeyInfo;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}
