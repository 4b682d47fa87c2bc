/**
 * The real `klein serve` as a process of its own, for the tests that kill it (crash.test.ts)
 * or time it (hostile-input.test.ts's default timeouts): an in-process server shares its
 * event loop with the test, whose synchronous calls (the CLI run by `createKey`, a sibling
 * suite's work) would delay its timers.
 */
import { freePort } from '../support/services.js';
import { launchKlein, runKlein, untilServing, type KleinProcess } from '../support/klein-process.js';
import type { KeyInfo } from './harness.js';

export interface ServeProcess extends KleinProcess {
  url: string;
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
  const p = launchKlein('klein serve', ['serve'], fullEnv);
  const url = `http://127.0.0.1:${port}`;
  try {
    await untilServing(p, 'READY', async () => ((await (await fetch(`${url}/health`)).json()) as { status: string }).status === 'READY', readyTimeoutMs);
  } catch (err) {
    p.child.kill('SIGKILL');
    throw err;
  }
  return {
    ...p,
    url,
    async createKey(opts = {}) {
      return JSON.parse(await runKlein(['keys', 'create', '--credits', opts.credits ?? '1000', '--json'], fullEnv)) as KeyInfo;
    },
    async stop() {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      const t = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
      await p.exited;
      clearTimeout(t);
    },
  };
}
