/**
 * Crash points, for the tests of what a crash leaves behind (test/e2e/crash.test.ts): with
 * `KLEIN_FAULTS=<point>[,<point>…]` the process kills itself with SIGKILL the first time it
 * reaches a listed point, exactly as a power cut or the OOM killer would stop it there — no
 * `finally`, no shutdown hook, an open database transaction left uncommitted. Never set it in
 * production. The points lie between the steps that must stay consistent:
 *
 *   submit.after_inputs              reference pixels stored, nothing reserved yet
 *   submit.after_reserve             inside the submit transaction: reserved, no row yet
 *   submit.after_commit              the QUEUED row and its reservation are committed
 *   end.<STATUS>.after_transition    inside an end's transaction: the row moved, no ledger entry yet
 *   end.<STATUS>.after_ledger        inside it: the ledger entry written, no webhook delivery yet
 *   end.<STATUS>.after_commit        the end is committed; waiters, slot and dispatcher not told
 *   deliver.after_write              a synchronous answer written out, its held charge not yet settled
 *
 * (<STATUS> is COMPLETED, FAILED or CANCELLED.) The list is read once, by the configuration;
 * the set below is process-wide on purpose, since a crash is.
 */
import { TERMINAL } from './contract/request-states.js';

export const FAULT_POINTS: readonly string[] = [
  'submit.after_inputs',
  'submit.after_reserve',
  'submit.after_commit',
  ...[...TERMINAL].flatMap((s) => [`end.${s}.after_transition`, `end.${s}.after_ledger`, `end.${s}.after_commit`]),
  'deliver.after_write',
];

const armed = new Set<string>();

/** Arms the listed points (validated by the configuration against FAULT_POINTS). */
export function armFaults(points: readonly string[]): void {
  for (const p of points) armed.add(p);
}

/** Dies here, at once, if this point is armed. */
export function fault(point: string): void {
  if (armed.size === 0 || !armed.has(point)) return;
  process.kill(process.pid, 'SIGKILL');
  // The signal is delivered before kill() returns on Linux; never go on past a crash point.
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
}
