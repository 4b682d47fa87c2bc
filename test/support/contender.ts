/**
 * Test helper run as a separate process: a second writer on the same SQLite file, the way
 * the `klein` CLI or a second worker would be. It opens the database, prints `ready`,
 * waits for a line on stdin (so contenders start together), does its work, and prints one
 * JSON line with what it got.
 *
 *   contender.ts claim   <target> <workerId>
 *   contender.ts reserve <target> <accountId> <requestIdPrefix> <count> <priceMicro>
 *
 * <target> is a SQLite data directory or a postgres:// URL (TempDb.target).
 */
import { once } from 'node:events';
import { openTarget } from './temp-db.js';
import { claimNext } from '../../src/store/requests.js';
import { reserve } from '../../src/accounts/ledger.js';

const [mode, target, ...rest] = process.argv.slice(2);
if (!mode || !target) throw new Error('usage: contender.ts claim|reserve <target> …');
const db = openTarget(target);
process.stdout.write('ready\n');
await once(process.stdin, 'data');

if (mode === 'claim') {
  const workerId = rest[0] ?? 'child';
  const got: string[] = [];
  for (;;) {
    const row = await claimNext(db, workerId, 60_000);
    if (!row) break;
    got.push(row.id);
    // Yield so the other claimers interleave with this one.
    await new Promise((r) => setImmediate(r));
  }
  process.stdout.write(`${JSON.stringify({ claimed: got })}\n`);
} else if (mode === 'reserve') {
  const [accountId, prefix, count, price] = rest;
  const results: Array<{ id: string; ok: boolean; balanceMicro: number }> = [];
  for (let i = 0; i < Number(count); i++) {
    const id = `${prefix}-${i}`;
    const r = await reserve(db, { accountId: accountId as string, requestId: id, priceMicro: Number(price) });
    results.push({ id, ...r });
    await new Promise((res) => setImmediate(res));
  }
  process.stdout.write(`${JSON.stringify({ results })}\n`);
} else {
  throw new Error(`unknown mode ${mode}`);
}
await db.destroy();
process.stdin.destroy();
