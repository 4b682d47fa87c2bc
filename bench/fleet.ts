/**
 * Fleet scaling benchmark: throughput of the scaled-out deployment with 1 and with N
 * workers, on real PostgreSQL and Redis, with the simulated engine (a fixed "GPU time"
 * per model evaluation), so the figure measures the queue, workers and gateway, not a model.
 *
 *   node --import tsx bench/fleet.ts [--workers 3] [--jobs-per-worker 12] [--ms-per-eval 100] [--steps 5] [--out FILE]
 *
 * Each run: one gateway, n workers, n × jobs-per-worker asynchronous requests submitted at
 * once; throughput = requests / (last completion − first submission), from the rows.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { startStack } from '../test/distributed/stack.js';

export interface FleetRun {
  workers: number;
  jobs: number;
  seconds: number;
  images_per_s: number;
}

export async function measureFleet(o: { workers: number; jobs: number; msPerEval: number; steps: number }): Promise<FleetRun> {
  const s = await startStack({ model: `simulated:${o.msPerEval}` });
  try {
    const g = await s.startGateway();
    for (let i = 0; i < o.workers; i++) await s.startWorker();
    await s.waitWorkers(o.workers);
    const key = await s.key({ credits: '100000' });
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: o.jobs }, async (_, i) => {
        const r = await fetch(`${g.url}/v2/flux-2-klein-4b`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': key },
          body: JSON.stringify({ prompt: `job ${i}`, width: 64, height: 64, steps: o.steps, cfg: 1, seed: i }),
        });
        if (r.status !== 200) throw new Error(`submit answered ${r.status}: ${await r.text()}`);
      }),
    );
    for (;;) {
      const open = await s.db.selectFrom('requests').select((eb) => eb.fn.countAll().as('n')).where('status', 'in', ['QUEUED', 'PROCESSING']).executeTakeFirstOrThrow();
      if (Number(open.n) === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const rows = await s.db.selectFrom('requests').select(['status', 'completed_at']).execute();
    const bad = rows.filter((r) => r.status !== 'COMPLETED');
    if (bad.length > 0 || rows.length !== o.jobs) throw new Error(`${bad.length} of ${rows.length} requests did not complete`);
    const seconds = (Math.max(...rows.map((r) => Number(r.completed_at))) - t0) / 1000;
    return { workers: o.workers, jobs: o.jobs, seconds, images_per_s: o.jobs / seconds };
  } finally {
    await s.stop();
  }
}

/** 1 worker, then n: the ratio of their throughputs. */
export async function scaling(o: { workers: number; jobsPerWorker: number; msPerEval: number; steps: number }) {
  const one = await measureFleet({ workers: 1, jobs: o.jobsPerWorker, msPerEval: o.msPerEval, steps: o.steps });
  const many = await measureFleet({ workers: o.workers, jobs: o.jobsPerWorker * o.workers, msPerEval: o.msPerEval, steps: o.steps });
  return { gpu_ms_per_image: o.msPerEval * o.steps, one, many, ratio: many.images_per_s / one.images_per_s };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      workers: { type: 'string', default: '3' },
      'jobs-per-worker': { type: 'string', default: '12' },
      'ms-per-eval': { type: 'string', default: '100' },
      steps: { type: 'string', default: '5' },
      out: { type: 'string' },
    },
  });
  const r = await scaling({ workers: Number(values.workers), jobsPerWorker: Number(values['jobs-per-worker']), msPerEval: Number(values['ms-per-eval']), steps: Number(values.steps) });
  const result = {
    device: `${cpus().length}-core CPU (${cpus()[0]?.model ?? 'unknown'}), simulated engine`,
    command: `node --import tsx bench/fleet.ts ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    ...r,
  };
  console.log(JSON.stringify(result, null, 2));
  if (values.out) writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
}
