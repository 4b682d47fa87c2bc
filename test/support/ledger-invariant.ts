/**
 * The ledger invariant, checked against a database as it is (for the crash, hostile and
 * fuzz suites). Every problem is one line; an exact ledger has none:
 *
 * - every account's balance equals the sum of its ledger entries;
 * - every request has exactly one reservation, and no reservation stays open without its row;
 * - a request that has ended has exactly one close — settle when it COMPLETED and was
 *   delivered, release when it FAILED, was CANCELLED, or completed undelivered — and a
 *   request still QUEUED or PROCESSING has none;
 * - every ended request that asked for a webhook has its delivery row.
 *
 * `allowHeld` accepts COMPLETED requests whose held charge is still open (a synchronous
 * answer being delivered right now); without it they are problems too.
 */
import type { Kysely } from 'kysely';
import { TERMINAL } from '../../src/contract/request-states.js';
import type { Database } from '../../src/store/schema.js';

export async function ledgerProblems(db: Kysely<Database>, o: { allowHeld?: boolean } = {}): Promise<string[]> {
  const problems: string[] = [];
  const accounts = await db.selectFrom('accounts').select(['id', 'balance_micro']).execute();
  const sums = new Map(
    (await db.selectFrom('ledger').select(['account_id', (eb) => eb.fn.sum('amount_micro').as('s')]).groupBy('account_id').execute()).map((r) => [r.account_id, Number(r.s ?? 0)]),
  );
  for (const a of accounts) {
    const sum = sums.get(a.id) ?? 0;
    if (Number(a.balance_micro) !== sum) problems.push(`account ${a.id}: balance ${a.balance_micro} ≠ Σ ledger ${sum}`);
  }

  const entries = await db.selectFrom('ledger').select(['request_id', 'kind']).where('request_id', 'is not', null).execute();
  const kinds = new Map<string, string[]>();
  for (const e of entries) kinds.set(e.request_id!, [...(kinds.get(e.request_id!) ?? []), e.kind]);
  const rows = await db.selectFrom('requests').select(['id', 'status', 'error_code', 'hold_until', 'webhook_url']).execute();
  const delivered = new Set((await db.selectFrom('webhook_deliveries').select('request_id').execute()).map((d) => d.request_id));

  for (const row of rows) {
    const k = kinds.get(row.id) ?? [];
    kinds.delete(row.id);
    const reserves = k.filter((x) => x === 'reserve').length;
    const closes = k.filter((x) => x === 'settle' || x === 'release');
    if (reserves !== 1) problems.push(`request ${row.id} (${row.status}): ${reserves} reservations`);
    if (!TERMINAL.has(row.status)) {
      if (closes.length > 0) problems.push(`request ${row.id} is ${row.status} but its reservation is closed (${closes.join(', ')})`);
      continue;
    }
    if (row.webhook_url && !delivered.has(row.id)) problems.push(`request ${row.id} (${row.status}) asked for a webhook and has no delivery`);
    if (closes.length === 0 && row.status === 'COMPLETED' && row.hold_until !== null && o.allowHeld) continue;
    if (closes.length !== 1) {
      problems.push(`request ${row.id} (${row.status}): ${closes.length} closes of its reservation (${closes.join(', ') || 'none'})`);
      continue;
    }
    const want = row.status === 'COMPLETED' && row.error_code !== 'undelivered' ? 'settle' : 'release';
    if (closes[0] !== want) problems.push(`request ${row.id} (${row.status}${row.error_code ? `, ${row.error_code}` : ''}) was closed by ${closes[0]}, not ${want}`);
  }
  // A closed reservation may outlive its row (retention deletes ended rows, never the ledger).
  for (const [id, k] of kinds) {
    if (!k.includes('settle') && !k.includes('release')) problems.push(`an open reservation (${k.join(', ')}) for ${id}, which has no request row`);
  }
  return problems;
}
