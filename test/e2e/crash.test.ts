/**
 * A crash at every point between the steps of a request's money path leaves the ledger
 * exact. The real server (`klein serve`, the embedded queue, the simulated engine) runs as a
 * child process with one crash point armed (KLEIN_FAULTS, src/faults.ts): it SIGKILLs itself
 * there — mid-transaction included — while a request goes through submission, completion,
 * failure, cancellation or delivery. The server is started again without faults, every
 * request is let finish, and then, on SQLite and on PostgreSQL:
 *   - every balance equals the sum of its ledger entries;
 *   - every reservation is closed exactly once, by the right kind (settle or release);
 *   - every ended request that asked for a webhook has its delivery, and it is sent.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { createKey } from '../../src/accounts/keys.js';
import { DIALECTS, tempDb, type TempDb } from '../support/temp-db.js';
import { ledgerProblems } from '../support/ledger-invariant.js';
import { TERMINAL } from '../../src/contract/request-states.js';
import { startServeProcess, type ServeProcess } from './serve-process.js';

type Server_ = ServeProcess;

function startServer(t: TempDb, env: Record<string, string>): Promise<Server_> {
  return startServeProcess({
    KLEIN_DATA_DIR: t.dataDir,
    ...(t.url ? { DATABASE_URL: t.url } : {}),
    KLEIN_MODEL: 'simulated:2',
    KLEIN_ENGINE_FAULTS: '1',
    KLEIN_ALLOW_NETWORKS: '127.0.0.0/8',
    KLEIN_WEBHOOK_BACKOFF_MS: '50',
    ...env,
  });
}

function stop(s: Server_): Promise<void> {
  return s.stop();
}

/** A webhook receiver: counts each request id it was told about. */
async function receiver(): Promise<{ url: string; seen: Map<string, number>; close(): Promise<void> }> {
  const seen = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      const id = (JSON.parse(body) as { data?: { request_id?: string } }).data?.request_id ?? '?';
      seen.set(id, (seen.get(id) ?? 0) + 1);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, seen, close: () => new Promise((r) => server.close(() => r())) };
}

const FAST = { steps: 3, cfg: 1, width: 64, height: 64 } as const;

interface Ctx {
  s: Server_;
  key: string;
  hook: string;
}

const post = (s: Server_, path: string, key: string, body?: unknown) =>
  fetch(`${s.url}${path}`, {
    method: 'POST',
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

let reference = '';

/** How each scenario drives the server into its crash point (the request may or may not get an answer). */
const DRIVE: Record<string, (c: Ctx) => Promise<void>> = {
  async submitV2({ s, key, hook }) {
    await post(s, '/v2/flux-2-klein-4b', key, { prompt: 'submitted', ...FAST, image_urls: [reference], webhook_url: hook }).catch(() => null);
  },
  async completeV2({ s, key, hook }) {
    await post(s, '/v2/flux-2-klein-4b', key, { prompt: 'completes', ...FAST, webhook_url: hook });
  },
  async failV2({ s, key, hook }) {
    await post(s, '/v2/flux-2-klein-4b', key, { prompt: '[[fault:internal]] fails', ...FAST, webhook_url: hook });
  },
  async cancelV2({ s, key, hook }) {
    const r = await post(s, '/v2/flux-2-klein-4b', key, { prompt: '[[fault:sleep:100]] cancelled', ...FAST, steps: 30, webhook_url: hook });
    const { request_id } = (await r.json()) as { request_id: string };
    for (;;) {
      const st = (await (await fetch(`${s.url}/v2/requests/${request_id}/status`, { headers: { 'x-api-key': key } })).json()) as { status: string };
      if (st.status === 'PROCESSING') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    await post(s, `/v2/requests/${request_id}/cancel`, key).catch(() => null);
  },
  async syncV1({ s, key }) {
    await post(s, '/v1/flux-2-klein-4b', key, { prompt: 'sync', ...FAST })
      .then((r) => r.arrayBuffer())
      .catch(() => null);
  },
};

const SCENARIOS: Array<[point: string, drive: keyof typeof DRIVE]> = [
  ['submit.after_inputs', 'submitV2'],
  ['submit.after_reserve', 'submitV2'],
  ['submit.after_commit', 'submitV2'],
  ...(['COMPLETED', 'FAILED', 'CANCELLED'] as const).flatMap((st) =>
    (['after_transition', 'after_ledger', 'after_commit'] as const).map((p): [string, keyof typeof DRIVE] => [`end.${st}.${p}`, st === 'COMPLETED' ? 'completeV2' : st === 'FAILED' ? 'failV2' : 'cancelV2']),
  ),
  ['end.COMPLETED.after_commit', 'syncV1'],
  ['deliver.after_write', 'syncV1'],
];

before(async () => {
  const png = await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 200, g: 40, b: 90 } } }).png().toBuffer();
  reference = `data:image/png;base64,${png.toString('base64')}`;
});

for (const dialect of DIALECTS) {
  describe(`a crash at every point of the money path leaves the ledger exact (${dialect})`, () => {
    let hook: Awaited<ReturnType<typeof receiver>>;
    before(async () => {
      hook = await receiver();
    });
    after(async () => hook?.close());

    for (const [point, drive] of SCENARIOS) {
      it(`${point} (${drive})`, async () => {
        const t = await tempDb(dialect);
        let s: Server_ | null = null;
        try {
          const made = await createKey(t.db, { creditsMicro: 10_000_000, rpm: 1000, concurrency: 10 });
          s = await startServer(t, { KLEIN_FAULTS: point });
          const crashed = s.exited.then(() => true);
          await DRIVE[drive]!({ s, key: made.key, hook: hook.url });
          const died = await Promise.race([crashed, new Promise<false>((r) => setTimeout(() => r(false), 60_000))]);
          assert.ok(died, `the server reached ${point} and died:\n${s.log()}`);
          assert.equal(s.child.signalCode, 'SIGKILL', `it was killed at ${point}`);

          s = await startServer(t, {});
          // Let every request end (a rolled-back end runs again), then every webhook go out.
          const deadline = Date.now() + 60_000;
          for (;;) {
            const open = await t.db.selectFrom('requests').select('id').where('status', 'not in', [...TERMINAL]).execute();
            const pending = await t.db.selectFrom('webhook_deliveries').select('id').where('status', '=', 'pending').execute();
            if (open.length === 0 && pending.length === 0) break;
            assert.ok(Date.now() < deadline, `requests ${JSON.stringify(open)} or deliveries ${JSON.stringify(pending)} did not finish:\n${s.log()}`);
            await new Promise((r) => setTimeout(r, 100));
          }
          assert.deepEqual(await ledgerProblems(t.db), []);
          const rows = await t.db.selectFrom('requests').select(['id', 'status', 'webhook_url']).execute();
          for (const r of rows) if (r.webhook_url) assert.ok((hook.seen.get(r.id) ?? 0) >= 1, `the webhook of ${r.id} (${r.status}) was sent`);
          // What each point must leave: a submission that never committed leaves nothing.
          if (point === 'submit.after_inputs' || point === 'submit.after_reserve') assert.equal(rows.length, 0);
          else assert.equal(rows.length, 1);
          const acct = await t.db.selectFrom('accounts').select('balance_micro').where('id', '=', made.account_id).executeTakeFirstOrThrow();
          const charged = 10_000_000 - Number(acct.balance_micro);
          const settled = await t.db.selectFrom('ledger').select('id').where('kind', '=', 'settle').execute();
          assert.equal(charged > 0, settled.length > 0, 'charged exactly when a request was settled');
        } finally {
          if (s) await stop(s);
          await t.close();
        }
      });
    }
  });
}
