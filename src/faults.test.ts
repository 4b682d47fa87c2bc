/** A crash point kills its process with SIGKILL when armed, and does nothing otherwise. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';

const run = (arm: string) =>
  spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', `const f = await import(${JSON.stringify(new URL('./faults.ts', import.meta.url).href)}); f.armFaults(${JSON.stringify(arm ? [arm] : [])}); f.fault('submit.after_commit'); console.log('went on');`],
    { encoding: 'utf8' },
  );

it('dies at an armed point, as a crash would (SIGKILL, nothing after it runs)', () => {
  const r = run('submit.after_commit');
  assert.equal(r.signal, 'SIGKILL');
  assert.equal(r.stdout, '');
});

it('goes on past a point that is not armed', () => {
  for (const arm of ['', 'submit.after_reserve']) {
    const r = run(arm);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'went on');
  }
});
