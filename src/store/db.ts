/**
 * Opens the database: PostgreSQL when a `postgres://` URL is given (DATABASE_URL, the
 * scale-out store; see postgres.ts), otherwise the embedded default, SQLite in
 * `<dataDir>/klein.db` (better-sqlite3), with
 * - WAL, so readers (status polls, the CLI) never block the writer;
 * - foreign keys on (SQLite leaves them off by default);
 * - busy_timeout, so a second process (the `klein` CLI while the server runs) waits for
 *   the write lock instead of failing at once;
 * - every transaction opened with BEGIN IMMEDIATE (below).
 *
 * Why IMMEDIATE: a plain BEGIN starts as a reader; when such a transaction later writes
 * while another connection has committed since its first read, WAL refuses the upgrade
 * with SQLITE_BUSY_SNAPSHOT, which busy_timeout cannot wait out
 * (https://sqlite.org/lang_transaction.html, https://sqlite.org/wal.html). All our
 * transactions write, so they take the write lock up front and wait for it politely.
 * This is dialect plumbing only: the queries themselves stay portable.
 *
 * Within one process use one `Kysely` per file: Kysely's SQLite driver has a single
 * connection and runs one transaction at a time, while better-sqlite3 waits for a lock
 * synchronously, so two connections in one process could stall each other.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { CompiledQuery, type DatabaseConnection, Kysely, SqliteDialect, type SqliteDatabase, type SqliteDialectConfig, SqliteDriver } from 'kysely';
import type { Database } from './schema.js';
import { openPostgres } from './postgres.js';

export const DB_FILE = 'klein.db';

export interface OpenOptions {
  /** Where the SQLite file lives (the embedded default). */
  dataDir: string;
  /** A postgres:// URL: use PostgreSQL instead of SQLite. */
  url?: string | null;
  /** How long to wait for another process's write lock (ms). */
  busyTimeoutMs?: number;
}

class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): SqliteDriver {
    return new ImmediateSqliteDriver(this.#config);
  }
}

export function openDatabase(opts: OpenOptions): Kysely<Database> {
  if (opts.url) return openPostgres(opts.url);
  mkdirSync(opts.dataDir, { recursive: true });
  const sqlite = new SQLite(join(opts.dataDir, DB_FILE));
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
  // NORMAL is durable across application crashes in WAL mode; only an OS crash or power
  // loss can lose the last commits (https://sqlite.org/pragma.html#pragma_synchronous).
  sqlite.pragma('synchronous = NORMAL');
  return new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: cachedStatements(sqlite) }) });
}

/** How many prepared statements a connection keeps: every query text the server runs, with room to spare. */
const STATEMENT_CACHE = 256;

/**
 * Kysely's SQLite driver prepares every query it runs, and compiling the SQL is most of the
 * cost of a small query (a one-row read by key: 4.7 µs prepared anew, 0.8 µs reused, on this
 * project's CI machines); a synchronous request runs about twenty. The server runs a few
 * dozen distinct texts, so each is compiled once and reused (better-sqlite3 statements are
 * reusable, and recompile themselves when the schema changes). Least recently used first
 * out, so texts that vary (IN lists of different lengths) cannot grow it without bound.
 * Safe to share: the driver runs one query at a time on its one connection.
 */
function cachedStatements(sqlite: SQLite.Database): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let stmt = cache.get(sql);
      if (stmt) {
        cache.delete(sql);
      } else {
        stmt = sqlite.prepare(sql);
        if (cache.size >= STATEMENT_CACHE) cache.delete(cache.keys().next().value!);
      }
      cache.set(sql, stmt);
      return stmt;
    },
  };
}
