// Runs the TypeScript tests and the engine's Python tests side by side (they share nothing
// but the machine), which shortens a full run on a machine with few cores: most of the
// TypeScript tests' time is spent waiting on servers, engines and clients. The TypeScript
// run prints as it goes; the engine's output is kept and printed after it, so the two never
// interleave. Exits non-zero when either fails.
import { spawn } from 'node:child_process';

function run(cmd, args, opts) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, opts);
    let out = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (out += d));
    child.on('exit', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), out }));
  });
}

const started = Date.now();
const engine = run('engine/.venv/bin/python', ['-m', 'pytest', '-q', 'engine/tests'], { stdio: ['ignore', 'pipe', 'pipe'] });
const ts = await run(process.execPath, ['scripts/run-ts-tests.mjs'], { stdio: 'inherit' });
const py = await engine;
process.stdout.write(`\n# engine tests (engine/.venv/bin/python -m pytest -q engine/tests)\n${py.out}`);
const min = ((Date.now() - started) / 60_000).toFixed(1);
console.log(`\n# TypeScript tests: ${ts.code === 0 ? 'passed' : `failed (${ts.code})`}; engine tests: ${py.code === 0 ? 'passed' : `failed (${py.code})`}; ${min} min`);
process.exit(ts.code !== 0 ? ts.code : py.code);
