/**
 * The real `klein` command as a child process, for the tests that run it as production does
 * (gateways and workers of a fleet, a server killed or timed from outside): its output kept
 * for failure messages, its exit awaited.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const root = new URL('../..', import.meta.url).pathname;
const KLEIN_MAIN = join(root, 'src/cli/main.ts');
const execFileAsync = promisify(execFile);

export interface KleinProcess {
  name: string;
  child: ChildProcess;
  /** The last 20 kB it printed (logs), for failure messages. */
  log: () => string;
  /** Its exit code (null when a signal ended it: `child.signalCode` says which). */
  exited: Promise<number | null>;
}

/** Starts `klein <args>` with exactly `env`, in the repository root. */
export function launchKlein(name: string, args: string[], env: NodeJS.ProcessEnv): KleinProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', KLEIN_MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: root });
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString('utf8')).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { name, child, log: () => out, exited };
}

/**
 * Runs `klein <args>` to its end and returns what it printed, without stopping this process's
 * event loop meanwhile (the harness's `klein` runs it synchronously). Rejects on a non-zero exit.
 */
export async function runKlein(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return (await execFileAsync(process.execPath, ['--import', 'tsx', KLEIN_MAIN, ...args], { env, cwd: root, encoding: 'utf8' })).stdout;
}

/**
 * Waits for `probe` (an error counts as not yet: the server may not listen yet), failing at
 * once with the process's log when it exits, or with it after `timeoutMs`.
 */
export async function untilServing(proc: KleinProcess, what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode ?? proc.child.signalCode}):\n${proc.log()}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not within ${timeoutMs} ms:\n${proc.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
