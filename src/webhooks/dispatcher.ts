/**
 * Webhook delivery: one terminal event per request that asked for it (completed, failed or
 * cancelled), signed in the Standard Webhooks scheme with the account's secret, POSTed
 * through the same SSRF guard as reference images, retried with exponential backoff and
 * jitter on errors, non-2xx answers and timeouts. Every attempt is recorded.
 *
 * Deliveries are rows (durable across restarts, recorded by record.ts); a poller sends
 * the due ones, each on its own promise, so a receiver that hangs delays nobody else and
 * never the generation path. Several gateways may poll one database: each attempt is
 * claimed first by one conditional UPDATE that pushes `next_attempt_at` past the attempt's
 * timeout, so only one of them sends it (and a gateway that dies mid-attempt leaves a
 * delivery that becomes due again).
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { request } from 'undici';
import { signedRecordView } from '../store/record-view.js';
import type { RequestLinks } from '../storage/request-links.js';
import { checkUrl, pinnedAgent, resolveChecked } from '../net/safe-fetch.js';
import { parseAllowNetworks, type Cidr } from '../net/networks.js';
import type { Database } from '../store/schema.js';
import { getRequest } from '../store/requests.js';
import { signedHeaders } from './sign.js';

export interface WebhookOptions {
  db: Kysely<Database>;
  logger: Logger;
  /** Base of the links in event bodies (read at send time: known once the server listens). */
  publicUrl: () => string;
  /**
   * Signs the body's `output` and `events_url` (contract §9), so the receiver fetches the
   * image without the key. Their lifetimes run from the first attempt: retries resend those
   * same bytes (the signature of the event covers them).
   */
  links: RequestLinks;
  allowNetworks: string;
  /** Total attempts (first try included). */
  maxAttempts: number;
  /** First retry delay; doubles each time, ±20% jitter. */
  backoffMs: number;
  timeoutMs: number;
  pollMs?: number;
}

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

  constructor(private readonly options: WebhookOptions) {
    this.allow = parseAllowNetworks(options.allowNetworks);
  }

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => void this.poll(), this.options.pollMs ?? 250);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Looks for due deliveries now (after one was recorded in this process). */
  wake(): void {
    void this.poll();
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    const due = await this.options.db
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
      void this.attempt(d)
        .catch((err: unknown) => this.options.logger.error({ err, request_id: d.request_id }, 'webhook attempt failed'))
        .finally(() => this.inFlight.delete(d.id));
    }
  }

  /** Takes the attempt for this dispatcher; false when another one took it first. */
  private async claim(d: { id: string; attempts: number; next_attempt_at: number }): Promise<boolean> {
    const res = await this.options.db
      .updateTable('webhook_deliveries')
      .set({ next_attempt_at: Date.now() + this.options.timeoutMs + 30_000 })
      .where('id', '=', d.id)
      .where('status', '=', 'pending')
      .where('attempts', '=', d.attempts)
      .where('next_attempt_at', '=', d.next_attempt_at)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /** The event body, written once at the first attempt and then kept (see record.ts). */
  private async bodyOf(d: { id: string; body: string; request_id: string; event: string; created_at: number }): Promise<string> {
    if (d.body !== '') return d.body;
    const row = await getRequest(this.options.db, d.request_id);
    const data = row ? await signedRecordView(row, this.options.publicUrl(), this.options.links) : { request_id: d.request_id };
    const at = row?.completed_at ?? d.created_at;
    const body = JSON.stringify({ type: d.event, timestamp: new Date(Number(at)).toISOString(), data });
    await this.options.db.updateTable('webhook_deliveries').set({ body }).where('id', '=', d.id).where('body', '=', '').execute();
    return (await this.options.db.selectFrom('webhook_deliveries').select('body').where('id', '=', d.id).executeTakeFirstOrThrow()).body;
  }

  private async attempt(d: {
    id: string;
    url: string;
    body: string;
    event: string;
    attempts: number;
    next_attempt_at: number;
    created_at: number;
    account_id: string;
    request_id: string;
  }): Promise<void> {
    if (!(await this.claim(d))) return;
    const n = d.attempts + 1;
    const t0 = Date.now();
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const acct = await this.options.db.selectFrom('accounts').select('webhook_secret').where('id', '=', d.account_id).executeTakeFirst();
      if (!acct) throw new Error('the account no longer exists');
      const body = await this.bodyOf(d);
      const url = checkUrl(d.url, { field: 'webhook_url' });
      const pinned = await resolveChecked(url, { allow: this.allow, field: 'webhook_url' });
      const agent = pinnedAgent(pinned);
      try {
        const res = await request(url, {
          method: 'POST',
          dispatcher: agent,
          signal: AbortSignal.timeout(this.options.timeoutMs),
          headers: { 'content-type': 'application/json', 'user-agent': 'klein-serve-webhooks/0.1', ...signedHeaders(acct.webhook_secret, d.id, body) },
          body,
        });
        statusCode = res.statusCode;
        await res.body.dump().catch(() => undefined);
        if (statusCode < 200 || statusCode >= 300) error = `the receiver answered ${statusCode}`;
      } finally {
        void agent.close().catch(() => undefined);
      }
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      if ((err as { name?: string }).name === 'TimeoutError' || /aborted|timeout/i.test(error)) error = `no answer within ${this.options.timeoutMs} ms`;
    }
    const now = Date.now();
    await this.options.db
      .insertInto('webhook_attempts')
      .values({ id: randomUUID(), delivery_id: d.id, attempt: n, status_code: statusCode, error, duration_ms: now - t0, created_at: now })
      .execute();
    if (error === null) {
      await this.options.db.updateTable('webhook_deliveries').set({ status: 'delivered', attempts: n, delivered_at: now, last_error: null }).where('id', '=', d.id).execute();
      return;
    }
    const final = n >= this.options.maxAttempts;
    await this.options.db
      .updateTable('webhook_deliveries')
      .set({ status: final ? 'failed' : 'pending', attempts: n, last_error: error, next_attempt_at: final ? now : now + retryDelayMs(n, this.options.backoffMs) })
      .where('id', '=', d.id)
      .execute();
    this.options.logger.warn({ request_id: d.request_id, attempt: n, final, reason: error }, 'webhook delivery failed');
  }
}
