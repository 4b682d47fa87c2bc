/**
 * The served model's variant decides its defaults before any engine runs (served-models.ts
 * may read it from a repository's name); an engine that loads the other variant is refused:
 * UNHEALTHY with the reason, restarted with backoff, never READY. Real engine processes on
 * the `tiny` miniatures.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { it } from 'node:test';
import { projectRoot } from '../config.js';
import { EngineProcess, type EngineState } from './engine-process.js';

const python = resolve(projectRoot(), 'engine/.venv/bin/python');
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

function until(engine: EngineProcess, want: EngineState, timeoutMs: number): Promise<void> {
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`not ${want} within ${timeoutMs} ms (state ${engine.state}, ${engine.lastError})`)), timeoutMs);
    const check = () => {
      if (engine.state === want) {
        clearTimeout(timer);
        done();
      }
    };
    engine.onStateChange(check);
    check();
  });
}

it('refuses an engine that loads another variant than the server took the model for', { timeout: 300_000 }, async () => {
  const wrong = new EngineProcess({ python, env: { ...process.env, KLEIN_MODEL: 'tiny' }, logger: quiet, variant: 'base', backoffInitialMs: 60_000 });
  let ready = false;
  wrong.onStateChange((s) => (ready ||= s === 'READY'));
  wrong.start();
  try {
    await until(wrong, 'UNHEALTHY', 240_000);
    assert.equal(ready, false, 'never READY');
    assert.match(wrong.lastError ?? '', /is distilled, but the server took it for base/);
  } finally {
    await wrong.stop();
  }
  const right = new EngineProcess({ python, env: { ...process.env, KLEIN_MODEL: 'tiny-base' }, logger: quiet, variant: 'base' });
  right.start();
  try {
    await until(right, 'READY', 240_000);
    assert.equal(right.facts?.variant, 'base');
  } finally {
    await right.stop();
  }
});
