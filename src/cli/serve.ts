/**
 * `klein serve [--role all|api|worker] [--gpus 0,1]`.
 *
 * - Embedded default (no REDIS_URL): one process tree — gateway, SQLite (or DATABASE_URL),
 *   the durable local queue and one engine supervised by this process.
 * - Scaled out (REDIS_URL): `--role api` is a stateless gateway (any number of replicas
 *   behind a load balancer); `--role worker --model <slug>` runs one engine of that model
 *   per listed GPU taking its jobs from Redis (the same as `klein worker`); `--role all` is
 *   both in one process, with engines for every served model.
 *
 * SIGTERM/SIGINT drain: a gateway answers new work with 503 and finishes its open
 * responses; a worker finishes its job and takes no other. A second signal stops at once.
 * What each process is made of is composed in src/compose/; this file is the command line.
 */
import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import { startServer, type Role } from '../compose/server.js';
import { startWorkers, workerModel, type RunningWorkers } from '../compose/workers.js';

/** SIGTERM/SIGINT: drain once; a second signal exits at once. */
function onSignals(drain: (force: boolean) => Promise<void>): void {
  let signals = 0;
  const handle = (signal: string) => {
    signals += 1;
    if (signals > 1) {
      console.error(`klein: ${signal} again, stopping now`);
      process.exit(1);
    }
    console.error(`klein: ${signal}, draining`);
    drain(false).then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handle('SIGTERM'));
  process.on('SIGINT', () => handle('SIGINT'));
}

async function runWorkers(gpus: string | undefined, model: string | undefined): Promise<void> {
  let running: RunningWorkers | null = null;
  const exitIdle = () => {
    void running?.close().then(() => process.exit(0));
  };
  const config = loadConfig();
  running = await startWorkers(config, process.env, parseGpus(gpus), workerModel(config, model), exitIdle);
  const r = running;
  onSignals((force) => r.close(force));
}

/** The GPUs to run engines on: `--gpus 0,1`, or one engine with the default device. */
export function parseGpus(v: string | undefined): Array<string | null> {
  if (v === undefined || v.trim() === '') return [null];
  const gpus = v.split(',').map((g) => g.trim());
  if (gpus.some((g) => !/^\d+$/.test(g)) || new Set(gpus).size !== gpus.length) throw new Error(`--gpus must be distinct GPU indices such as 0,1, got "${v}"`);
  return gpus;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the API server (configured by environment variables; see README)')
    .option('--role <role>', 'all (gateway and engine), api (gateway only, needs REDIS_URL) or worker (engines only)', 'all')
    .option('--gpus <list>', 'GPU indices for this process\'s engines, e.g. 0,1 (roles all and worker)')
    .option('--model <slug>', 'role worker: the served model (a KLEIN_MODELS slug) its engines load; needed when several are served')
    .action(async (options: { role: string; gpus?: string; model?: string }) => {
      if (!['all', 'api', 'worker'].includes(options.role)) throw new Error(`--role must be all, api or worker, got "${options.role}"`);
      if (options.role === 'worker') return runWorkers(options.gpus, options.model);
      const server = await startServer(loadConfig(), process.env, { role: options.role as Role, gpus: parseGpus(options.gpus) });
      onSignals(() => server.close());
    });
  program
    .command('worker')
    .description('run engines of one served model that take its jobs from Redis, one per GPU (REDIS_URL, DATABASE_URL; KLEIN_IDLE_EXIT to leave when idle)')
    .option('--model <slug>', 'the served model (a KLEIN_MODELS slug); needed when several are served')
    .option('--gpus <list>', 'GPU indices, e.g. 0,1 (default: one engine on the default device)')
    .action(async (options: { gpus?: string; model?: string }) => runWorkers(options.gpus, options.model));
}
