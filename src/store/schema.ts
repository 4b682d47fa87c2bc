/**
 * Table types for Kysely, written to stay portable between SQLite (embedded default) and
 * PostgreSQL (scale-out, a later dialect) with the same migrations:
 * - ids are text (generated in code, never autoincrement);
 * - money is integer micro-credits (1 credit = 1,000,000) in `bigint` columns, read as JS
 *   numbers: every amount is checked to be a safe integer (< 2^53) before it is written;
 * - times are epoch milliseconds in `bigint` columns;
 * - booleans are integers 0/1; JSON is text.
 * The Postgres dialect must read int8 as a JS number (pg returns strings by default); the
 * values above are all below 2^53, so that is exact.
 */
import type { Generated } from 'kysely';
import type { RequestStatus } from '../contract/request-states.js';

export interface AccountsTable {
  id: string;
  name: string | null;
  /** Spendable balance: granted − reserved + released (never negative, a CHECK guards it). */
  balance_micro: number;
  /** Requests per minute; null means the server default. */
  rpm: number | null;
  /** Concurrent requests; null means the server default. */
  concurrency: number | null;
  /** Standard Webhooks secret (`whsec_` + base64) used to sign this account's webhooks. */
  webhook_secret: string;
  created_at: number;
}

export interface ApiKeysTable {
  id: string;
  account_id: string;
  /** sha256 of the whole key, lower-case hex. The key itself is never stored. */
  key_hash: string;
  /** What people see, e.g. `kl_Ab12Cd…`; not unique and not a secret. */
  prefix: string;
  name: string | null;
  is_admin: Generated<number>;
  created_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
  /** The model slugs this key may use, comma-separated; null: every served model. */
  models: string | null;
}

export type LedgerKind = 'grant' | 'reserve' | 'settle' | 'release';

/**
 * `open` marks a reservation, `close` its settle or release. UNIQUE(request_id, phase)
 * makes settle and release exclude each other in the database itself, so they cannot both
 * happen even when they race on two connections (portable: no locking SQL needed).
 */
export type LedgerPhase = 'open' | 'close';

export interface LedgerTable {
  id: string;
  account_id: string;
  /** Null for grants. */
  request_id: string | null;
  kind: LedgerKind;
  phase: LedgerPhase | null;
  /**
   * Signed change of the spendable balance: grant +n, reserve −price, release +price,
   * settle +(price − cost) (0 when the whole reservation is charged).
   */
  amount_micro: number;
  note: string | null;
  created_at: number;
}

export interface RequestsTable {
  id: string;
  account_id: string;
  key_id: string;
  /** Which API took it, e.g. `v1/flux-2-klein-4b`. */
  route: string;
  /** The served model's slug (contract §6); the queue of that model takes it. */
  model: Generated<string>;
  status: RequestStatus;
  /** ResolvedParams as JSON, without image bytes (data: URIs are replaced by the caller). */
  params: string;
  seed: number;
  width: number;
  height: number;
  price_micro: number;
  cost_micro: number | null;
  error_code: string | null;
  error_message: string | null;
  /** Stage timings as JSON (`{"text_ms":…, "denoise_ms":…}`). */
  timings: string | null;
  output_key: string | null;
  output_format: string | null;
  attempts: number;
  worker_id: string | null;
  lease_until: number | null;
  idempotency_key: string | null;
  /** Hash of the request body that first used `idempotency_key` (a different body is a 422). */
  idempotency_hash: string | null;
  webhook_url: string | null;
  /**
   * Set on a synchronous request whose charge waits for its answer to be delivered: while
   * COMPLETED with an open reservation it is settled by the gateway that sends the answer,
   * or released when the client is gone; after this time (epoch ms, past the sync timeout)
   * the repair sweep releases it. Null: settled when it completes.
   */
  hold_until: number | null;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  expires_at: number;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface WebhookDeliveriesTable {
  id: string;
  request_id: string;
  account_id: string;
  url: string;
  /** request.completed | request.failed | request.cancelled */
  event: string;
  body: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

export interface WebhookAttemptsTable {
  id: string;
  delivery_id: string;
  attempt: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
  created_at: number;
}

export interface Database {
  accounts: AccountsTable;
  api_keys: ApiKeysTable;
  ledger: LedgerTable;
  requests: RequestsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
}
