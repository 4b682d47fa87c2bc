/**
 * Waits for a condition instead of a guessed delay: a test that sleeps and then assumes a
 * request is running fails on a loaded machine. Polls `probe` every `intervalMs` and fails
 * with `what` once `timeoutMs` has passed.
 */
import assert from 'node:assert/strict';

export async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 20_000, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    assert.ok(Date.now() < deadline, `${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
