/**
 * The repair sweep: closes whatever a crash, an older version or a held charge left open,
 * so the ledger invariant holds (every balance is the sum of its entries, every reservation
 * is closed exactly once once its request has ended, every ended request that asked for a
 * webhook has its delivery). Run at start-up and then periodically (sweeper.ts), on every
 * gateway; each repair is its own transaction of the ledger's idempotent steps, so sweeps
 * racing each other or a live end change nothing twice.
 *
 *   ended row, reservation open          COMPLETED → settle; FAILED, CANCELLED → release
 *   COMPLETED held past its hold_until    release: its answer was never delivered (delivery.ts)
 *   reservation without a request row     release (submission is atomic today; older versions
 *                                         reserved first and could crash before the insert)
 *   ended row with a webhook_url and no delivery row → record it (the outbox)
 *
 * Requests still QUEUED or PROCESSING are never touched: their reservation is live.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { release, settle } from '../accounts/ledger.js';
import { TERMINAL } from '../contract/request-states.js';
import { getRequest } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import { recordWebhook } from '../webhooks/record.js';
import { releaseUndelivered } from './delivery.js';

export interface RepairReport {
  settled: string[];
  released: string[];
  undelivered: string[];
  orphans: string[];
  webhooks: string[];
}

export interface RepairOptions {
  now?: number;
  /** Release every held charge now, whatever its hold_until: no gateway holds any answer (an embedded server starting). */
  releaseAllHeld?: boolean;
  /** Also look for reservations without a row (a scan of the whole ledger: at start-up only). */
  orphans?: boolean;
}

const ENDED = [...TERMINAL];

export async function repairEnds(db: Kysely<Database>, storage: OutputStorage, options: RepairOptions = {}): Promise<RepairReport> {
  const now = options.now ?? Date.now();
  const report: RepairReport = { settled: [], released: [], undelivered: [], orphans: [], webhooks: [] };

  // Ended requests whose reservation is still open.
  const open = await db
    .selectFrom('requests as q')
    .innerJoin('ledger as r', (j) => j.onRef('r.request_id', '=', 'q.id').on('r.kind', '=', 'reserve'))
    .select(['q.id', 'q.status', 'q.hold_until'])
    .where('q.status', 'in', ENDED)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('ledger as c').select('c.id').whereRef('c.request_id', '=', 'q.id').where('c.phase', '=', 'close'))))
    .execute();
  for (const row of open) {
    if (row.status !== 'COMPLETED') {
      if ((await release(db, row.id)) === 'released') report.released.push(row.id);
    } else if (row.hold_until === null) {
      if ((await settle(db, row.id)) === 'settled') report.settled.push(row.id);
    } else if (options.releaseAllHeld || Number(row.hold_until) <= now) {
      report.undelivered.push(...(await releaseUndelivered(db, storage, [row.id], 'no delivery of its answer was confirmed (its gateway stopped); not charged')));
    }
  }

  // Reservations whose request row does not exist.
  const orphans = !options.orphans ? [] : await db
    .selectFrom('ledger as r')
    .select('r.request_id')
    .where('r.kind', '=', 'reserve')
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('ledger as c').select('c.id').whereRef('c.request_id', '=', 'r.request_id').where('c.phase', '=', 'close'))))
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('requests as q').select('q.id').whereRef('q.id', '=', 'r.request_id'))))
    .execute();
  for (const { request_id } of orphans) {
    if (request_id && (await release(db, request_id)) === 'released') report.orphans.push(request_id);
  }

  // Ended requests that asked for a webhook and have no delivery row.
  const missing = await db
    .selectFrom('requests as q')
    .select('q.id')
    .where('q.status', 'in', ENDED)
    .where('q.webhook_url', 'is not', null)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('webhook_deliveries as d').select('d.id').whereRef('d.request_id', '=', 'q.id'))))
    .execute();
  for (const { id } of missing) {
    const row = await getRequest(db, id);
    if (row) {
      await recordWebhook(db, row);
      report.webhooks.push(id);
    }
  }
  return report;
}

/** Runs a repair and logs what it changed (one line, only when it changed something). */
export async function repairAndLog(db: Kysely<Database>, storage: OutputStorage, logger: Logger, options: RepairOptions = {}): Promise<RepairReport> {
  const r = await repairEnds(db, storage, options);
  const n = r.settled.length + r.released.length + r.undelivered.length + r.orphans.length + r.webhooks.length;
  if (n > 0) logger.warn({ ...r }, 'repaired ends left open (a crash, or answers never delivered)');
  return r;
}
