/**
 * The PostgreSQL dialect of the store (DATABASE_URL=postgres://…), for the scale-out
 * deployment: several gateways and workers share one database. The queries and the
 * migrations are the same as on SQLite (portable SQL only, see requests.ts).
 *
 * Types: `bigint` columns (money in micro-credits, epoch-ms times) come back from node-pg
 * as strings by default; every value we store is a safe integer (< 2^53, checked before it
 * is written), so they are parsed to JS numbers here, per connection pool rather than by
 * changing node-pg's global parsers. `count(*)` is int8 too; `sum()` is numeric and stays a
 * string, which callers turn into a number.
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

const INT8_OID = 20;

function parseInt8(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new RangeError(`bigint ${v} is beyond 2^53 and cannot be read exactly`);
  return n;
}

const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export function openPostgres(url: string, opts: { max?: number } = {}): Kysely<Database> {
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, types });
  // An idle client that loses its connection (the server restarted) emits 'error' on the
  // pool; without a listener that would crash the process. The pool drops the client and
  // the next query opens a fresh connection.
  pool.on('error', () => undefined);
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
