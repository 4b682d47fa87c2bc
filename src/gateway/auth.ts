/**
 * Authentication as an `onRequest` hook (fastify style): an unauthenticated caller is
 * rejected with 401 before its body is read. Keys are looked up by hash; the key itself is
 * never logged or echoed.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { authenticate } from '../accounts/keys.js';
import type { Database } from '../store/schema.js';
import { ApiError } from '../contract/errors.js';

export interface Caller {
  accountId: string;
  keyId: string;
  isAdmin: boolean;
  rpm: number;
  concurrency: number;
  /**
   * The account's balance when the key was checked, read with it: the early refusals (the
   * credit floor, the price without references) use it; the reservation checks the
   * balance again, atomically, so a balance that changed since only moves a 406 later.
   */
  balanceMicro: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
}

/** Reads the key from `x-api-key` (Segmind) or `Authorization: Bearer` (OpenAI clients). */
export function presentedKey(req: FastifyRequest): string | null {
  const h = req.headers['x-api-key'];
  if (typeof h === 'string' && h.trim() !== '') return h.trim();
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m?.[1]) return m[1];
  }
  return null;
}

export function authHook(db: Kysely<Database>, defaults: { rpm: number; concurrency: number }) {
  return async function auth(req: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const key = presentedKey(req);
    if (!key) throw new ApiError('unauthorized', 'Missing API key: send it in the x-api-key header');
    const found = await authenticate(db, key);
    if (!found) throw new ApiError('unauthorized', 'Invalid or revoked API key');
    req.caller = {
      accountId: found.account.id,
      keyId: found.key.id,
      isAdmin: Boolean(found.key.is_admin),
      rpm: found.account.rpm ?? defaults.rpm,
      concurrency: found.account.concurrency ?? defaults.concurrency,
      balanceMicro: Number(found.account.balance_micro),
    };
  };
}

export function requireCaller(req: FastifyRequest): Caller {
  if (!req.caller) throw new ApiError('unauthorized');
  return req.caller;
}

export async function adminOnly(req: FastifyRequest): Promise<void> {
  if (!requireCaller(req).isAdmin) throw new ApiError('forbidden', 'This route needs an admin key');
}
