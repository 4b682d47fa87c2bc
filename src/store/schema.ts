/**
 * Table types for Kysely. Portable across SQLite and PostgreSQL: text ids, integer
 * micro-credits (bigint, always within 2^53), times as epoch milliseconds (bigint).
 */
import type { Generated } from 'kysely';
import type { RequestStatus } from './request-states.js';

export interface AccountsTable {
  id: string;
  name: string | null;
  balance_micro: number;
  rpm: number | null;
  concurrency: number | null;
  webhook_secret: string;
  created_at: number;
}

export interface ApiKeysTable {
  id: string;
  account_id: string;
  key_hash: string;
  prefix: string;
  name: string | null;
  is_admin: number;
  created_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
}

export type LedgerKind = 'grant' | 'reserve' | 'settle' | 'release';

export interface LedgerTable {
  id: Generated<number>;
  account_id: string;
  request_id: string | null;
  kind: LedgerKind;
  /** Signed change of the spendable balance (settle is 0: the reserve already took it). */
  amount_micro: number;
  note: string | null;
  created_at: number;
}

export interface RequestsTable {
  id: string;
  account_id: string;
  key_id: string;
  route: string;
  status: RequestStatus;
  /** ResolvedParams as JSON, without image bytes. */
  params: string;
  seed: number;
  width: number;
  height: number;
  price_micro: number;
  cost_micro: number | null;
  error_code: string | null;
  error_message: string | null;
  timings: string | null;
  output_key: string | null;
  output_format: string | null;
  attempts: number;
  worker_id: string | null;
  lease_until: number | null;
  idempotency_key: string | null;
  idempotency_hash: string | null;
  webhook_url: string | null;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  expires_at: number;
}

export interface Database {
  accounts: AccountsTable;
  api_keys: ApiKeysTable;
  ledger: LedgerTable;
  requests: RequestsTable;
}
