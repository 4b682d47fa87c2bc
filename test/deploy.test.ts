/**
 * The deployment files (deploy/) checked against the product they deploy: they parse; every
 * command they run is a real `klein` command of the built entry point; every environment
 * variable they set is one the gateway, the worker or the engine reads (a typo would be
 * silently ignored in production); the autoscaler targets the worker Deployment, may reach
 * zero, and queries metrics the gateway really exports; Dockerfiles copy what exists.
 * (No Docker engine runs here, so images are not built.)
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { createMetrics } from '../src/metrics/metrics.js';

const root = new URL('..', import.meta.url).pathname;
const deploy = join(root, 'deploy');

function files(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) files(p, out);
    else out.push(p);
  }
  return out;
}

/** Every KLEIN_…, *_URL, S3_… name that the TypeScript or the engine's Python mentions. */
function knownVariables(): Set<string> {
  const names = new Set(['HOST', 'PORT', 'NODE_ENV', 'HF_TOKEN', 'HF_HOME', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']);
  const sources = [...files(join(root, 'src')), ...files(join(root, 'engine', 'klein_engine'))].filter((f) => /\.(ts|py)$/.test(f));
  for (const f of sources) for (const m of readFileSync(f, 'utf8').matchAll(/['"]((?:KLEIN|S3)_[A-Z0-9_]+|DATABASE_URL|REDIS_URL)['"]/g)) names.add(m[1]!);
  return names;
}

const klein = (cmd: unknown): string[] | null => {
  const a = (Array.isArray(cmd) ? cmd : []) as string[];
  return a[0] === 'node' && a[1] === 'dist/src/cli/main.js' ? a.slice(2) : null;
};

function checkKleinArgs(args: string[], where: string): void {
  const [sub, ...rest] = args;
  assert.ok(['serve', 'worker', 'migrate'].includes(sub ?? ''), `${where}: unknown klein command ${sub}`);
  if (sub === 'serve') assert.ok(rest.join(' ').match(/^--role (api|worker|all)( --gpus [\d,]+)?$/) || rest.length === 0, `${where}: ${rest.join(' ')}`);
  if (sub === 'worker') assert.ok(rest.length === 0 || /^--gpus [\d,]+$/.test(rest.join(' ')), `${where}: ${rest.join(' ')}`);
}

test('the built entry point the files run exists, and serves the roles they ask for', () => {
  assert.ok(existsSync(join(root, 'dist/src/cli/main.js')), 'npm run build makes dist/src/cli/main.js');
  const serve = readFileSync(join(root, 'src/cli/serve.ts'), 'utf8');
  for (const sub of ["command('serve')", "command('worker')", "'--role <role>'", "'--gpus <list>'"]) assert.ok(serve.includes(sub), sub);
  assert.ok(readFileSync(join(root, 'src/cli/migrate.ts'), 'utf8').includes("command('migrate')"));
});

test('compose: the services of one machine, with real commands and known variables', () => {
  const c = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8')) as { services: Record<string, Record<string, unknown>> };
  assert.deepEqual(Object.keys(c.services).sort(), ['gateway', 'migrate', 'postgres', 'redis', 'worker']);
  const known = knownVariables();
  for (const [name, svc] of Object.entries(c.services)) {
    const build = svc.build as { context: string; dockerfile: string } | undefined;
    if (build) assert.ok(existsSync(join(deploy, build.context, build.dockerfile)), `${name}: ${build.dockerfile}`);
    const args = klein(svc.command);
    if (args) checkKleinArgs(args, name);
    if (build) for (const v of Object.keys((svc.environment as Record<string, string>) ?? {})) if (v !== '<<') assert.ok(known.has(v), `${name}: ${v} is read by nothing`);
  }
  assert.match(JSON.stringify(c.services.redis?.command), /appendonly/);
});

test('kubernetes: gateway, worker, migration, and a KEDA ScaledObject down to zero on real metrics', async () => {
  const docs = files(join(deploy, 'kubernetes')).flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => ({ f, d: d.toJSON() as Record<string, any> })));
  const known = knownVariables();
  const byKind = (k: string) => docs.filter((x) => x.d.kind === k).map((x) => x.d);
  for (const { f, d } of docs) assert.ok(d.apiVersion && d.kind && d.metadata?.name, `${f}: apiVersion, kind and name`);
  const config = byKind('ConfigMap')[0]!;
  const secret = byKind('Secret')[0]!;
  for (const v of [...Object.keys(config.data), ...Object.keys(secret.stringData)]) assert.ok(known.has(v), `${v} is read by nothing`);
  const deployments = new Map(byKind('Deployment').map((d) => [d.metadata.name as string, d]));
  assert.deepEqual([...deployments.keys()].sort(), ['klein-gateway', 'klein-worker']);
  for (const [name, d] of deployments) {
    for (const c of d.spec.template.spec.containers) {
      checkKleinArgs(klein(c.args) ?? [], name);
      for (const e of c.env ?? []) assert.ok(known.has(e.name), `${name}: ${e.name} is read by nothing`);
    }
  }
  const worker = deployments.get('klein-worker')!;
  assert.equal(worker.spec.template.spec.containers[0].resources.limits['nvidia.com/gpu'], 1);
  assert.ok(worker.spec.template.spec.terminationGracePeriodSeconds >= 60, 'time to finish the running job');
  checkKleinArgs(klein(byKind('Job')[0]!.spec.template.spec.containers[0].command) ?? [], 'migrate job');

  const so = byKind('ScaledObject')[0]!;
  assert.equal(so.spec.scaleTargetRef.name, 'klein-worker');
  assert.equal(so.spec.minReplicaCount, 0);
  const exported = (await createMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
  const query = so.spec.triggers[0].metadata.query as string;
  const used = [...query.matchAll(/klein_[a-z_]+/g)].map((m) => m[0]);
  assert.ok(used.length > 0);
  for (const m of used) assert.ok(exported.includes(m), `${m} is not exported by the gateway`);
});

test('Dockerfiles copy paths that exist and run the built entry point', () => {
  for (const f of files(join(deploy, 'docker'))) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) for (const src of m[1]!.split(/\s+/)) assert.ok(existsSync(join(root, src)), `${f}: COPY ${src}`);
    const cmd = /^CMD (\[.*\])$/m.exec(text);
    assert.ok(cmd, `${f}: CMD`);
    checkKleinArgs(klein(JSON.parse(cmd[1]!)) ?? [], f);
  }
});
