/**
 * The deployment files (deploy/) checked against the product they deploy: they parse; every
 * command they run is a real `klein` command of the built entry point; every environment
 * variable they set is one the gateway, the worker or the engine reads (a typo would be
 * silently ignored in production); every served model (KLEIN_MODELS) has its own worker
 * Deployment and KEDA ScaledObject, which targets that Deployment, may reach zero, and
 * queries that model's series of metrics the gateway really exports; Dockerfiles copy what
 * exists.
 * (No Docker engine runs here, so images are not built.)
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig } from '../src/config.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { queueName } from '../src/queue/redis/bull-job.js';
import { RedisKeys } from '../src/redis/connection.js';

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
  if (sub === 'worker') assert.ok(/^(--model [a-z0-9._-]+)?( ?--gpus [\d,]+)?$/.test(rest.join(' ')), `${where}: ${rest.join(' ')}`);
}

/** The slug a `klein worker` command serves (its --model), or null. */
function workerModel(args: string[]): string | null {
  const i = args.indexOf('--model');
  return args[0] === 'worker' && i > 0 ? (args[i + 1] ?? null) : null;
}

/** KLEIN_MODELS' slugs (contract §6: comma-separated slug=model). */
function servedSlugs(raw: unknown): string[] {
  assert.equal(typeof raw, 'string', 'KLEIN_MODELS is set');
  return (raw as string).split(',').map((e) => e.trim().split('=')[0]!).filter(Boolean);
}

/** The metric names a PromQL query reads, each with its label matchers ('' when none). */
function querySeries(query: string): { name: string; labels: string }[] {
  return [...query.matchAll(/(klein_[a-z_]+)(\{[^}]*\})?/g)].map((m) => ({ name: m[1]!, labels: m[2] ?? '' }));
}

test('the built entry point the files run exists, and serves the roles they ask for', () => {
  assert.ok(existsSync(join(root, 'dist/src/cli/main.js')), 'npm run build makes dist/src/cli/main.js');
  const serve = readFileSync(join(root, 'src/cli/serve.ts'), 'utf8');
  for (const sub of ["command('serve')", "command('worker')", "'--role <role>'", "'--gpus <list>'"]) assert.ok(serve.includes(sub), sub);
  assert.ok(readFileSync(join(root, 'src/cli/migrate.ts'), 'utf8').includes("command('migrate')"));
  // The worker files select their model with --model (klein worker --model <slug>).
  const cli = files(join(root, 'src/cli')).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
  assert.ok(cli.some((f) => readFileSync(f, 'utf8').includes("'--model <")), 'a --model <slug> option in src/cli/');
});

test("the queue gauges the ScaledObjects query carry the model's label", async () => {
  const { registry } = createMetrics({ defaultMetrics: false });
  for (const name of ['klein_jobs_waiting', 'klein_jobs_running', 'klein_queue_oldest_age_seconds']) {
    const gauge = registry.getSingleMetric(name) as unknown as { labelNames?: readonly string[] } | undefined;
    assert.ok(gauge, `${name} is exported`);
    assert.ok(gauge.labelNames?.includes('model'), `${name} has a model label`);
  }
});

test('compose: the services of one machine, one worker per served model, with real commands and known variables', () => {
  // Compose resolves YAML merge keys (<<); the worker services share one definition.
  const c = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true }) as { 'x-env': Record<string, string>; services: Record<string, Record<string, unknown>> };
  const slugs = servedSlugs(c['x-env'].KLEIN_MODELS);
  assert.ok(slugs.length >= 2, 'the example serves several models');
  const workers = Object.keys(c.services).filter((n) => n.startsWith('worker'));
  assert.deepEqual(Object.keys(c.services).filter((n) => !workers.includes(n)).sort(), ['gateway', 'migrate', 'postgres', 'redis']);
  const known = knownVariables();
  for (const [name, svc] of Object.entries(c.services)) {
    const build = svc.build as { context: string; dockerfile: string } | undefined;
    if (build) assert.ok(existsSync(join(deploy, build.context, build.dockerfile)), `${name}: ${build.dockerfile}`);
    const args = klein(svc.command);
    if (args) checkKleinArgs(args, name);
    if (build) for (const v of Object.keys((svc.environment as Record<string, string>) ?? {})) assert.ok(known.has(v), `${name}: ${v} is read by nothing`);
  }
  const served = workers.map((n) => workerModel(klein(c.services[n]!.command) ?? []));
  assert.deepEqual([...served].sort(), [...slugs].sort(), 'one worker service per served model, each with its --model');
  const gpus = workers.map((n) => JSON.stringify((c.services[n]!.deploy as any).resources.reservations.devices[0].device_ids));
  assert.equal(new Set(gpus).size, workers.length, `each worker on its own GPU: ${gpus.join(' ')}`);
  assert.match(JSON.stringify(c.services.redis?.command), /appendonly/);
});

test('kubernetes: gateway, migration, and per served model a worker Deployment and a KEDA ScaledObject down to zero on its own series', async () => {
  const docs = files(join(deploy, 'kubernetes')).flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => ({ f, d: d.toJSON() as Record<string, any> })));
  const known = knownVariables();
  const byKind = (k: string) => docs.filter((x) => x.d.kind === k).map((x) => x.d);
  for (const { f, d } of docs) assert.ok(d.apiVersion && d.kind && d.metadata?.name, `${f}: apiVersion, kind and name`);
  const config = byKind('ConfigMap')[0]!;
  const secret = byKind('Secret')[0]!;
  for (const v of [...Object.keys(config.data), ...Object.keys(secret.stringData)]) assert.ok(known.has(v), `${v} is read by nothing`);
  // The settings the pods get are ones the product starts with (a malformed KLEIN_MODELS throws).
  loadConfig({ ...config.data, ...secret.stringData });
  const slugs = servedSlugs(config.data.KLEIN_MODELS);
  assert.ok(slugs.length >= 2, 'the example serves several models');

  const deployments = byKind('Deployment');
  for (const d of deployments) {
    for (const c of d.spec.template.spec.containers) {
      checkKleinArgs(klein(c.args) ?? [], d.metadata.name);
      for (const e of c.env ?? []) assert.ok(known.has(e.name), `${d.metadata.name}: ${e.name} is read by nothing`);
    }
  }
  const workers = deployments.filter((d) => d.metadata.name !== 'klein-gateway');
  assert.equal(deployments.length, workers.length + 1, 'one gateway Deployment');
  const claims = new Set(byKind('PersistentVolumeClaim').map((p) => p.metadata.name as string));
  const modelOf = new Map<string, string>();
  for (const w of workers) {
    const name = w.metadata.name as string;
    const pod = w.spec.template.spec;
    const slug = workerModel(klein(pod.containers[0].args) ?? []);
    assert.ok(slug && slugs.includes(slug), `${name}: --model ${slug} is not in KLEIN_MODELS (${slugs.join(', ')})`);
    modelOf.set(name, slug);
    assert.equal(pod.containers[0].resources.limits['nvidia.com/gpu'], 1, name);
    assert.ok(pod.terminationGracePeriodSeconds >= 60, `${name}: time to finish the running job`);
    for (const v of pod.volumes ?? []) if (v.persistentVolumeClaim) assert.ok(claims.has(v.persistentVolumeClaim.claimName), `${name}: ${v.persistentVolumeClaim.claimName}`);
    const selector = w.spec.selector.matchLabels as Record<string, string>;
    for (const [k, v] of Object.entries(selector)) assert.equal(w.spec.template.metadata.labels[k], v, `${name}: its pods carry its selector`);
  }
  assert.deepEqual([...modelOf.values()].sort(), [...slugs].sort(), 'one worker Deployment per served model');
  // Deployments whose selectors match each other's pods would count (and scale away) those pods.
  for (const w of workers) {
    const mine = w.spec.selector.matchLabels as Record<string, string>;
    for (const other of workers) {
      if (other === w) continue;
      const labels = other.spec.template.metadata.labels as Record<string, string>;
      assert.ok(Object.entries(mine).some(([k, v]) => labels[k] !== v), `${w.metadata.name} selects ${other.metadata.name}'s pods`);
    }
  }
  checkKleinArgs(klein(byKind('Job')[0]!.spec.template.spec.containers[0].command) ?? [], 'migrate job');

  const exported = (await createMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
  const scaledIn = docs.filter((x) => x.d.kind === 'ScaledObject');
  const scaled = scaledIn.map((x) => x.d);
  const targets = scaled.map((so) => so.spec.scaleTargetRef.name as string);
  assert.deepEqual([...targets].sort(), [...modelOf.keys()].sort(), 'one ScaledObject per worker Deployment, each targeting it by name');
  for (const so of scaled) {
    const slug = modelOf.get(so.spec.scaleTargetRef.name)!;
    assert.equal(so.spec.minReplicaCount, 0, `${so.metadata.name}: scales to zero`);
    assert.ok(so.spec.maxReplicaCount >= 1, so.metadata.name);
    assert.equal(so.spec.triggers.length, 1, so.metadata.name);
    const query = so.spec.triggers[0].metadata.query as string;
    const series = querySeries(query);
    assert.ok(series.length > 0, `${so.metadata.name}: ${query}`);
    for (const { name, labels } of series) {
      assert.ok(exported.includes(name), `${name} is not exported by the gateway`);
      assert.equal(labels, `{model="${slug}"}`, `${so.metadata.name}: ${name} counts ${slug}'s requests only`);
    }
    // The commented redis trigger names this model's BullMQ wait list as the queue really keys it.
    const text = readFileSync(scaledIn.find((x) => x.d === so)!.f, 'utf8');
    for (const m of text.matchAll(/listName: (\S+)/g)) assert.equal(m[1], `${new RedisKeys('klein').bull}:${queueName(slug)}:wait`, so.metadata.name);
  }
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
