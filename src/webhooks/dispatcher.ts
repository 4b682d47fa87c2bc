/**
 * Webhook delivery: one terminal event per request that asked for it (completed, failed or
 * cancelled), signed in the Standard Webhooks scheme with the account's secret, POSTed
 * through the same SSRF guard as reference images, retried with exponential backoff and
 * jitter on errors, non-2xx answers and timeouts. Every attempt is recorded.
 *
 * Deliveries are rows (durable across restarts); a poller sends the due ones, each on its
 * own promise, so a receiver that hangs delays nobody else and never the generation path.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { request } from 'undici';
import { recordView } from '../gateway/records.js';
import { checkUrl, pinnedAgent, resolveChecked } from '../images/safe-fetch.js';
import { parseAllowNetworks, type Cidr } from '../images/networks.js';
import type { Database } from '../store/schema.js';
import type { RequestRow } from '../store/requests.js';
import { signedHeaders } from './sign.js';

export interface WebhookOptions {
  db: Kysely<Database>;
  logger: Logger;
  /** Base of the links in event bodies (read at send time: known once the server listens). */
  publicUrl: () => string;
  allowNetworks: string;
  /** Total attempts (first try included). */
  maxAttempts: number;
  /** First retry delay; doubles each time, ±20% jitter. */
  backoffMs: number;
  timeoutMs: number;
  pollMs?: number;
}

const EVENTS = { COMPLETED: 'request.completed', FAILED: 'request.failed', CANCELLED: 'request.cancelled' } as const;

/** Delay before attempt n+1 after n failed attempts: backoff·2^(n−1) with ±20% jitter. */
export function retryDelayMs(failedAttempts: number, backoffMs: number, rnd = Math.random): number {
  const base = backoffMs * 2 ** (failedAttempts - 1);
  return Math.round(base * (0.8 + 0.4 * rnd()));
}

export class Webhooks {
  private readonly allow: Cidr[];
  private readonly inFlight = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: WebhookOptions) {
    this.allow = parseAllowNetworks(o.allowNetworks);
  }

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => void this.poll(), this.o.pollMs ?? 250);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Records the terminal event of `row` for delivery (once per request). */
  async enqueue(row: RequestRow, now = Date.now()): Promise<void> {
    if (!row.webhook_url || !(row.status in EVENTS)) return;
    const event = EVENTS[row.status as keyof typeof EVENTS];
    const body = JSON.stringify({ type: event, timestamp: new Date(now).toISOString(), data: recordView(row, this.o.publicUrl()) });
    await this.o.db
      .insertInto('webhook_deliveries')
      .values({
        id: `msg_${randomUUID()}`,
        request_id: row.id,
        account_id: row.account_id,
        url: row.webhook_url,
        event,
        body,
        status: 'pending',
        attempts: 0,
        next_attempt_at: now,
        last_error: null,
        created_at: now,
        delivered_at: null,
      })
      .onConflict((oc) => oc.column('request_id').doNothing())
      .execute();
    void this.poll();
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    const due = await this.o.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('status', '=', 'pending')
      .where('next_attempt_at', '<=', Date.now())
      .orderBy('next_attempt_at')
      .limit(50)
      .execute()
      .catch(() => []);
    for (const d of due) {
      if (this.inFlight.has(d.id)) continue;
      this.inFlight.add(d.id);
      void this.attempt(d).finally(() => this.inFlight.delete(d.id));
    }
  }

  private async attempt(d: { id: string; url: string; body: string; attempts: number; account_id: string; request_id: string }): Promise<void> {
    const n = d.attempts + 1;
    const t0 = Date.now();
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const acct = await this.o.db.selectFrom('accounts').select('webhook_secret').where('id', '=', d.account_id).executeTakeFirst();
      if (!acct) throw new Error('the account no longer exists');
      const url = checkUrl(d.url, { field: 'webhook_url' });
      const pinned = await resolveChecked(url, { allow: this.allow, field: 'webhook_url' });
      const agent = pinnedAgent(pinned);
      try {
        const res = await request(url, {
          method: 'POST',
          dispatcher: agent,
          signal: AbortSignal.timeout(this.o.timeoutMs),
          headers: { 'content-type': 'application/json', 'user-agent': 'klein-serve-webhooks/0.1', ...signedHeaders(acct.webhook_secret, d.id, d.body) },
          body: d.body,
        });
        statusCode = res.statusCode;
        await res.body.dump().catch(() => undefined);
        if (statusCode < 200 || statusCode >= 300) error = `the receiver answered ${statusCode}`;
      } finally {
        void agent.close().catch(() => undefined);
      }
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      if ((err as { name?: string }).name === 'TimeoutError' || /aborted|timeout/i.test(error)) error = `no answer within ${this.o.timeoutMs} ms`;
    }
    const now = Date.now();
    await this.o.db
      .insertInto('webhook_attempts')
      .values({ id: randomUUID(), delivery_id: d.id, attempt: n, status_code: statusCode, error, duration_ms: now - t0, created_at: now })
      .execute();
    if (error === null) {
      await this.o.db.updateTable('webhook_deliveries').set({ status: 'delivered', attempts: n, delivered_at: now, last_error: null }).where('id', '=', d.id).execute();
      return;
    }
    const final = n >= this.o.maxAttempts;
    await this.o.db
      .updateTable('webhook_deliveries')
      .set({ status: final ? 'failed' : 'pending', attempts: n, last_error: error, next_attempt_at: final ? now : now + retryDelayMs(n, this.o.backoffMs) })
      .where('id', '=', d.id)
      .execute();
    this.o.logger.warn({ request_id: d.request_id, attempt: n, final, reason: error }, 'webhook delivery failed');
  }
}
