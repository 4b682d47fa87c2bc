/**
 * The layers of src/ point one way (ARCHITECTURE.md § Layers): a module may import from its
 * own folder and from folders of lower layers only — never up, never sideways into a folder
 * of its own layer, so no two folders import each other. Routes do not import one another;
 * what two routes share lives beside them in gateway/. Imports are read with the TypeScript
 * compiler's own pre-processor (static, type-only, re-exports and dynamic `import()` alike).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

/** Lowest first. A folder of src/ (or a file at its top, by name) belongs to exactly one. */
const LAYERS: readonly (readonly string[])[] = [
  ['contract'], // the public API: schemas, errors, states, sizes — imports nothing of ours
  ['billing', 'net', 'storage', 'metrics', 'redis', 'faults', 'client', 'served-models'],
  ['config', 'limits', 'store'],
  ['accounts', 'images', 'webhooks', 'loras'],
  ['queue'],
  ['worker'],
  ['gateway'],
  ['compose'], // builds the processes (embedded server, fleet gateway, fleet worker) from the config
  ['cli'], // the command line
];

const SRC = resolve('src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return name.endsWith('.ts') && !name.endsWith('.test.ts') ? [p] : [];
  });
}

/** src/a/b.ts → "a"; src/config.ts → "config". */
function unit(file: string): string {
  const parts = relative(SRC, file).split('/');
  return parts.length === 1 ? parts[0]!.replace(/\.ts$/, '') : parts[0]!;
}

interface Edge {
  from: string;
  to: string;
}

/** Every relative import between files of src/ (paths relative to src/). */
function edges(): Edge[] {
  return sources(SRC).flatMap((file) =>
    ts
      .preProcessFile(readFileSync(file, 'utf8'), true, true)
      .importedFiles.map((f) => f.fileName)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => ({ from: relative(SRC, file), to: relative(SRC, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))) })),
  );
}

/** What is wrong with a set of imports: one line each. */
function layerProblems(all: readonly Edge[], layers: readonly (readonly string[])[] = LAYERS): string[] {
  const rank = new Map(layers.flatMap((names, i) => names.map((n) => [n, i] as const)));
  const unitOf = (p: string) => (p.includes('/') ? p.split('/')[0]! : p.replace(/\.ts$/, ''));
  const problems: string[] = [];
  for (const { from, to } of all) {
    if (to.startsWith('..')) {
      problems.push(`${from} imports ${to}, outside src/`);
      continue;
    }
    const a = unitOf(from);
    const b = unitOf(to);
    for (const u of [a, b]) if (!rank.has(u)) problems.push(`${u} (${u === a ? from : to}) is in no layer: add it to LAYERS and to ARCHITECTURE.md`);
    if (!rank.has(a) || !rank.has(b)) continue;
    if (a === b) {
      if (from.startsWith('gateway/routes/') && to.startsWith('gateway/routes/')) problems.push(`${from} imports the route ${to}: move what they share into gateway/`);
      continue;
    }
    const ra = rank.get(a)!;
    const rb = rank.get(b)!;
    if (rb > ra) problems.push(`${from} imports ${to}: ${a} (layer ${ra}) reaches up to ${b} (layer ${rb})`);
    else if (rb === ra) problems.push(`${from} imports ${to}: ${a} and ${b} share layer ${ra} and must not import each other`);
  }
  return [...new Set(problems)];
}

describe('layers', () => {
  it('src/ imports only down, and routes do not import routes', () => {
    const all = edges();
    assert.ok(all.length > 200, `found only ${all.length} imports: the reader is broken`);
    assert.deepEqual(layerProblems(all), []);
  });

  it('places every folder of src/ in exactly one layer', () => {
    const units = new Set(sources(SRC).map(unit));
    const placed = LAYERS.flat();
    assert.equal(new Set(placed).size, placed.length, 'a name is in two layers');
    assert.deepEqual([...units].filter((u) => !placed.includes(u)), []);
    assert.deepEqual(placed.filter((u) => !units.has(u)), [], 'a layer names a folder that does not exist');
  });

  it('names each kind of break (the checker itself can fail)', () => {
    const bad: Edge[] = [
      { from: 'queue/lifecycle.ts', to: 'gateway/errors.ts' }, // up
      { from: 'images/decode.ts', to: 'webhooks/sign.ts' }, // sideways
      { from: 'gateway/routes/a.ts', to: 'gateway/routes/b.ts' }, // route to route
      { from: 'nowhere/x.ts', to: 'contract/errors.ts' }, // unplaced
      { from: 'contract/x.ts', to: '../test/y.ts' }, // outside src
    ];
    const p = layerProblems(bad);
    assert.equal(p.length, 5, p.join('\n'));
    assert.match(p[0]!, /reaches up/);
    assert.match(p[1]!, /share layer/);
    assert.match(p[2]!, /imports the route/);
    assert.match(p[3]!, /in no layer/);
    assert.match(p[4]!, /outside src/);
    assert.deepEqual(layerProblems([{ from: 'gateway/app.ts', to: 'contract/errors.ts' }, { from: 'gateway/app.ts', to: 'gateway/routes/admin.ts' }]), []);
  });
});
