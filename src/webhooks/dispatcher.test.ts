/**
 * Webhook delivery when several gateways poll one database: each attempt is sent by one
 * dispatcher only, signed with the account's secret, and a retry after a failed attempt is
 * still sent once. Runs on SQLite and on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { createAccount } from '../accounts/accounts.js';
import { createRequest, getRequest, transition } from '../store/requests.js';
import { DIALECTS, tempDb, type TempDb } from '../../test/support/temp-db.js';
import { LinkSigner } from '../storage/signed-links.js';
import { eventsPath, RequestLinks } from '../storage/request-links.js';
import { Webhooks } from './dispatcher.js';
import { recordWebhook } from './record.js';
import { verify } from './sign.js';
import { until } from '../../test/support/until.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const links = new RequestLinks(new LinkSigner(['s'.repeat(32)]), { directUrl: async () => null }, { linkTtlS: 3600, eventsLinkTtlS: 900 });

for (const dialect of DIALECTS) {
  describe(`webhook dispatchers sharing a database (${dialect})`, () => {
    let t: TempDb;
    let server: Server;
    let answers: number[];
    let received: Array<{ headers: Record<string, string | undefined>; body: string }>;
    beforeEach(async () => {
      t = await tempDb(dialect);
      received = [];
      answers = [];
      server = createServer((req, res) => {
        let body = '';
        req.on('data', (d: Buffer) => (body += d.toString('utf8')));
        req.on('end', () => {
          received.push({ headers: req.headers as Record<string, string | undefined>, body });
          // A slow receiver: the other dispatchers poll many times while an attempt is open.
          setTimeout(() => {
            res.statusCode = answers.shift() ?? 200;
            res.end();
          }, 200);
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    });
    afterEach(async () => {
      await new Promise((r) => server.close(r));
      await t.close();
    });

    async function finishedRequest(): Promise<{ id: string; secret: string }> {
      const acct = await createAccount(t.db);
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      await createRequest(t.db, { id: 'req_1', account_id: acct.id, key_id: 'k', route: 'v2', params: { prompt: 'p', image_urls: [] }, seed: 1, width: 64, height: 64, price_micro: 10, webhook_url: url });
      await transition(t.db, 'req_1', ['QUEUED'], 'FAILED', { error_code: 'engine_failed', error_message: 'x' });
      await recordWebhook(t.db, (await getRequest(t.db, 'req_1'))!);
      return { id: 'req_1', secret: acct.webhook_secret };
    }

    function dispatchers(n: number): Webhooks[] {
      return Array.from({ length: n }, () => {
        const w = new Webhooks({
          db: t.db,
          logger: pino({ level: 'silent' }),
          publicUrl: () => 'http://gateway.test',
          links,
          allowNetworks: '127.0.0.0/8',
          maxAttempts: 3,
          backoffMs: 100,
          timeoutMs: 2000,
          pollMs: 10,
        });
        w.start();
        return w;
      });
    }

    test('three dispatchers send one signed event, once', async () => {
      const { secret } = await finishedRequest();
      const ds = dispatchers(3);
      try {
        await until('the webhook is sent', () => received.length >= 1, 10_000);
        await sleep(900); // a second POST, if any, would come within this
      } finally {
        for (const d of ds) d.stop();
      }
      assert.equal(received.length, 1, 'exactly one POST');
      const got = received[0]!;
      assert.ok(verify(secret, got.headers, got.body), 'the signature verifies with the account secret');
      const body = JSON.parse(got.body) as { type: string; data: { request_id: string; status: string; status_url: string; events_url: string } };
      assert.equal(body.type, 'request.failed');
      assert.equal(body.data.request_id, 'req_1');
      assert.equal(body.data.status_url, 'http://gateway.test/v2/requests/req_1/status');
      // events_url carries its short-lived token (contract §9), signed over the path alone.
      const ev = new URL(body.data.events_url);
      assert.equal(`${ev.origin}${ev.pathname}`, 'http://gateway.test/v2/requests/req_1/events');
      assert.equal(links.check(eventsPath('req_1'), { expires: ev.searchParams.get('expires') ?? undefined, sig: ev.searchParams.get('sig') ?? undefined }), 'valid');
      const attempts = await t.db.selectFrom('webhook_attempts').selectAll().execute();
      assert.equal(attempts.length, 1);
      const d = await t.db.selectFrom('webhook_deliveries').select(['status', 'attempts']).executeTakeFirstOrThrow();
      assert.deepEqual(d, { status: 'delivered', attempts: 1 });
    });

    test('a failed attempt is retried once, by one of them, with the same signed body', async () => {
      await finishedRequest();
      answers = [500];
      const ds = dispatchers(3);
      try {
        for (let i = 0; i < 100 && received.length < 2; i++) await sleep(20);
        await sleep(600);
      } finally {
        for (const d of ds) d.stop();
      }
      assert.equal(received.length, 2, 'the first attempt and one retry');
      assert.equal(received[0]!.body, received[1]!.body);
      assert.equal(received[0]!.headers['webhook-id'], received[1]!.headers['webhook-id']);
      const rows = await t.db.selectFrom('webhook_attempts').select(['attempt', 'status_code']).orderBy('attempt').execute();
      assert.deepEqual(rows, [{ attempt: 1, status_code: 500 }, { attempt: 2, status_code: 200 }]);
    });
  });
}
