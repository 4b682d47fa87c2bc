/**
 * Throughput against the batch size: images per second with KLEIN_MAX_BATCH 1, 2, 4 and 8,
 * side by side in one run, on the embedded server and in a fleet (one gateway, one worker,
 * real PostgreSQL and Redis), with the simulated engine modelling a batch's cost.
 *
 *   node --import tsx bench/throughput.ts [--batches 1,2,4,8] [--jobs 32] [--steps 5]
 *        [--cost 60+40] [--modes embedded,fleet] [--out FILE]
 *
 * The simulated engine (engine/klein_engine/simulated.py) costs `a + b·n` ms per evaluation
 * of a batch of n (`--cost a+b`): `a` is what a forward costs whatever its batch, `b` what
 * each request adds. So the figures measure what the product does with batching — claiming
 * compatible requests together, one engine round trip per batch, encode, store and settle
 * per request — against the ceiling the cost model allows (`ideal`: n images every
 * steps·(a + b·n) ms). A GPU's own a and b come from bench/engine.py's S6 rows.
 *
 * Each run submits `jobs` compatible asynchronous requests at once (64×64, cfg 1) and
 * counts from the first submission to the last completion, read from the rows; the mean
 * batch is the mean of the records' batch_size.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { Kysely } from 'kysely';
import { createKey } from '../src/accounts/keys.js';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/compose/server.js';
import { openDatabase } from '../src/store/db.js';
import type { Database } from '../src/store/schema.js';
import { startStack } from '../test/distributed/stack.js';

export type Mode = 'embedded' | 'fleet';

export interface ThroughputRun {
  mode: Mode;
  max_batch: number;
  jobs: number;
  seconds: number;
  images_per_s: number;
  /** Mean of the records' batch_size. */
  mean_batch: number;
}

export interface RunOptions {
  maxBatch: number;
  jobs: number;
  steps: number;
  /** `a+b`: ms per evaluation of a batch of n is a + b·n. */
  cost: string;
}

/** Images per second the cost model allows at batch n (no overhead at all). */
export function ideal(cost: string, steps: number, n: number): number {
  const [a, b] = parseCost(cost);
  return n / ((steps * (a + b * n)) / 1000);
}

function parseCost(cost: string): [number, number] {
  const m = /^(?:(\d+(?:\.\d+)?)\+)?(\d+(?:\.\d+)?)$/.exec(cost.trim());
  if (!m) throw new Error(`--cost must be <b> or <a>+<b> milliseconds, got ${cost}`);
  return [Number(m[1] ?? 0), Number(m[2])];
}

/** Submits `jobs` requests at once and waits for all of them; figures from the rows. */
async function drive(url: string, key: string, db: Kysely<Database>, mode: Mode, o: RunOptions): Promise<ThroughputRun> {
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: o.jobs }, async (_, i) => {
      const r = await fetch(`${url}/v2/flux-2-klein-4b`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': key },
        body: JSON.stringify({ prompt: `job ${i}`, width: 64, height: 64, steps: o.steps, cfg: 1, seed: i }),
      });
      if (r.status !== 200) throw new Error(`submit answered ${r.status}: ${await r.text()}`);
    }),
  );
  for (;;) {
    const open = await db.selectFrom('requests').select((eb) => eb.fn.countAll().as('n')).where('status', 'in', ['QUEUED', 'PROCESSING']).executeTakeFirstOrThrow();
    if (Number(open.n) === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const rows = await db.selectFrom('requests').select(['status', 'completed_at', 'timings']).execute();
  const bad = rows.filter((r) => r.status !== 'COMPLETED');
  if (bad.length > 0 || rows.length !== o.jobs) throw new Error(`${bad.length} of ${rows.length} requests did not complete`);
  const seconds = (Math.max(...rows.map((r) => Number(r.completed_at))) - t0) / 1000;
  const batches = rows.map((r) => Number((JSON.parse(r.timings ?? '{}') as { batch_size?: number }).batch_size ?? NaN));
  return { mode, max_batch: o.maxBatch, jobs: o.jobs, seconds, images_per_s: o.jobs / seconds, mean_batch: batches.reduce((a, b) => a + b, 0) / batches.length };
}

/** The embedded server (SQLite, the engine in this process tree). */
export async function measureEmbedded(o: RunOptions): Promise<ThroughputRun> {
  const dataDir = mkdtempSync(join(tmpdir(), 'klein-throughput-'));
  const env = { ...process.env, HOST: '127.0.0.1', PORT: '0', KLEIN_DATA_DIR: dataDir, KLEIN_MODEL: `simulated:${o.cost}`, KLEIN_MAX_BATCH: String(o.maxBatch), KLEIN_LOG_LEVEL: 'error' };
  const server = await startServer(loadConfig(env), env);
  const db = openDatabase({ dataDir });
  try {
    const { key } = await createKey(db, { creditsMicro: 1e12, rpm: 1_000_000, concurrency: 10_000 });
    for (;;) {
      const h = (await (await fetch(`${server.url}/health`)).json()) as { status: string };
      if (h.status === 'READY') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return await drive(server.url, key, db, 'embedded', o);
  } finally {
    await db.destroy();
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** A fleet: one gateway, one worker, PostgreSQL and Redis (test/distributed/stack.ts). */
export async function measureFleet(o: RunOptions): Promise<ThroughputRun> {
  const s = await startStack({ model: `simulated:${o.cost}`, env: { KLEIN_MAX_BATCH: String(o.maxBatch) } });
  try {
    const g = await s.startGateway();
    await s.startWorker();
    await s.waitWorkers(1);
    const key = await s.key({ credits: '100000', concurrency: 10_000 });
    return await drive(g.url, key, s.db, 'fleet', o);
  } finally {
    await s.stop();
  }
}

export async function measure(mode: Mode, o: RunOptions): Promise<ThroughputRun> {
  return mode === 'embedded' ? measureEmbedded(o) : measureFleet(o);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      batches: { type: 'string', default: '1,2,4,8' },
      jobs: { type: 'string', default: '32' },
      steps: { type: 'string', default: '5' },
      cost: { type: 'string', default: '60+40' },
      modes: { type: 'string', default: 'embedded,fleet' },
      out: { type: 'string' },
    },
  });
  const batches = values.batches.split(',').map(Number);
  const modes = values.modes.split(',') as Mode[];
  const common = { jobs: Number(values.jobs), steps: Number(values.steps), cost: values.cost };
  const runs: ThroughputRun[] = [];
  for (const mode of modes) {
    for (const maxBatch of batches) {
      const r = await measure(mode, { ...common, maxBatch });
      console.error(JSON.stringify(r));
      runs.push(r);
    }
  }
  const [a, b] = parseCost(values.cost);
  const result = {
    device: `${cpus().length}-core CPU (${cpus()[0]?.model ?? 'unknown'}), simulated engine`,
    commit: execSync('git rev-parse --short HEAD').toString().trim(),
    command: `node --import tsx bench/throughput.ts ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    model: `simulated:${values.cost}`,
    cost: { fixed_ms_per_evaluation: a, ms_per_request_per_evaluation: b, steps: common.steps, image: '64x64, cfg 1' },
    ideal_images_per_s: Object.fromEntries(batches.map((n) => [n, Math.round(ideal(values.cost, common.steps, n) * 1000) / 1000])),
    runs,
  };
  const text = `${JSON.stringify(result, null, 2)}\n`;
  process.stdout.write(text);
  if (values.out) writeFileSync(values.out, text);
}
