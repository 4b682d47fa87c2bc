/**
 * A scaled-out deployment on one machine, for the distributed tests: real PostgreSQL and
 * Redis (private instances, test/support/services.ts), gateways (`klein serve --role api`)
 * and workers (`klein worker`) as separate processes of the real `klein` command, sharing
 * a data directory for outputs (the role S3 plays across machines). Engines are the
 * simulated engine (`KLEIN_MODEL=simulated:<ms per evaluation>`: protocol-exact, a fixed
 * "GPU time" per model evaluation) unless told otherwise.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { openDatabase } from '../../src/store/db.js';
import { migrateToLatest } from '../../src/store/migrations/index.js';
import type { Database } from '../../src/store/schema.js';
import { freePort, freshPostgresDatabase, startRedis, type RedisService } from '../support/services.js';
import { launchKlein, untilServing, type KleinProcess } from '../support/klein-process.js';
import { until } from '../support/until.js';
import { createKey } from '../../src/accounts/keys.js';
import { creditsToMicro } from '../../src/billing/pricing.js';

export type Proc = KleinProcess;

export interface Stack {
  env: NodeJS.ProcessEnv;
  db: Kysely<Database>;
  redis: RedisService;
  dataDir: string;
  gateways: Array<Proc & { url: string }>;
  workers: Proc[];
  startGateway(extra?: Record<string, string>): Promise<Proc & { url: string }>;
  startWorker(extra?: Record<string, string>, args?: string[]): Promise<Proc>;
  key(o?: { credits?: string; rpm?: number; concurrency?: number }): Promise<string>;
  /** Waits until the fleet reports `n` ready workers (read through the first gateway). */
  waitWorkers(n: number, timeoutMs?: number): Promise<void>;
  /** Starts `gateways` gateways (at once) and `workers` workers, and waits for the workers to be ready. */
  startFleet(gateways: number, workers: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `env` adds to or overrides the stack's environment; a variable set to null is unset, so
 * the program's own default applies (e.g. `KLEIN_JOB_LOCK_MS: null` runs with the default
 * lock instead of the short one the tests use otherwise).
 */
export async function startStack(o: { model?: string; env?: Record<string, string | null> } = {}): Promise<Stack> {
  const [pg, redis] = await Promise.all([freshPostgresDatabase('klein_dist'), startRedis()]);
  const dataDir = mkdtempSync(join(tmpdir(), 'klein-dist-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOST: '127.0.0.1',
    DATABASE_URL: pg.url,
    REDIS_URL: redis.url,
    KLEIN_DATA_DIR: dataDir,
    KLEIN_MODEL: o.model ?? 'simulated:20',
    KLEIN_LOG_LEVEL: process.env.KLEIN_TEST_LOG_LEVEL ?? 'warn',
    KLEIN_JOB_LOCK_MS: '3000',
    KLEIN_RECONCILE_MS: '1000',
  };
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (v === null) delete env[k];
    else env[k] = v;
  }
  const db = openDatabase({ dataDir, url: pg.url });
  await migrateToLatest(db);
  const stack: Stack = {
    env,
    db,
    redis,
    dataDir,
    gateways: [],
    workers: [],
    async startGateway(extra = {}) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const p = launchKlein(`gateway ${stack.gateways.length + 1}`, ['serve', '--role', 'api'], { ...env, PORT: String(port), KLEIN_PUBLIC_URL: url, ...extra });
      await untilServing(p, `${p.name} answering`, async () => (await fetch(`${url}/health`)).ok, 60_000);
      const g = { ...p, url };
      stack.gateways.push(g);
      return g;
    },
    async startWorker(extra = {}, args = []) {
      const p = launchKlein(`worker ${stack.workers.length + 1}`, ['worker', ...args], { ...env, ...extra });
      stack.workers.push(p);
      return p;
    },
    async key(k = {}) {
      const made = await createKey(db, {
        creditsMicro: creditsToMicro(k.credits ?? '1000') ?? 0,
        rpm: k.rpm ?? 100_000,
        concurrency: k.concurrency ?? 1000,
        name: 'dist',
      });
      return made.key;
    },
    async startFleet(gateways, workers) {
      await Promise.all(Array.from({ length: gateways }, () => stack.startGateway()));
      for (let i = 0; i < workers; i++) await stack.startWorker();
      await stack.waitWorkers(workers);
    },
    async waitWorkers(n, timeoutMs = 60_000) {
      const g = stack.gateways[0];
      if (!g) throw new Error('start a gateway first');
      const ready = async () => {
        const h = (await (await fetch(`${g.url}/health`)).json()) as { workers?: { ready: number } };
        return (h.workers?.ready ?? 0) >= n;
      };
      await until(`${n} ready workers`, () => ready().catch(() => false), timeoutMs, 100);
    },
    async stop() {
      const all = [...stack.gateways, ...stack.workers];
      for (const p of all) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      await Promise.race([Promise.all(all.map((p) => p.exited)), new Promise((r) => setTimeout(r, 15_000))]);
      for (const p of all) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      await db.destroy();
      await redis.stop();
      await pg.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return stack;
}

/** POST /v1/flux-2-klein-4b on a gateway. */
export async function generateOn(url: string, key: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/v1/flux-2-klein-4b`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key, ...headers },
    body: JSON.stringify(body),
  });
}

/** The ledger invariant for one account: balance = sum of its ledger entries. */
export async function ledgerBalanced(db: Kysely<Database>, accountId: string): Promise<{ balance: number; sum: number }> {
  const a = await db.selectFrom('accounts').select('balance_micro').where('id', '=', accountId).executeTakeFirstOrThrow();
  const s = await db.selectFrom('ledger').select((eb) => eb.fn.sum('amount_micro').as('s')).where('account_id', '=', accountId).executeTakeFirstOrThrow();
  return { balance: Number(a.balance_micro), sum: Number(s.s ?? 0) };
}
