/**
 * Authentication as an `onRequest` hook (fastify style): an unauthenticated caller is
 * rejected with 401 before its body is read. Keys are looked up by hash; the key itself is
 * never logged or echoed.
 *
 * What a key may do is checked here too: the admin routes (adminOnly) and the models it may
 * use (contract §2: "403 — the key exists but may not do this (model not in its scopes …)").
 * A route checks the model once its slug names a served model, so an unknown slug stays a
 * 404 for every key, and a served one outside the key's list is a 403 naming those it may use.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { authenticate, keyModels } from '../accounts/keys.js';
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
  /** The served models' slugs the key may use; null: every one (model-access.ts checks it). */
  models: readonly string[] | null;
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
      models: keyModels(found.key.models),
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

/** Throws 403 `forbidden` when the caller's key is limited to models other than `slug`. */
export function assertModelAllowed(caller: Caller, slug: string): void {
  if (caller.models === null || caller.models.includes(slug)) return;
  const allowed = caller.models.join(', ');
  throw new ApiError('forbidden', `This key may not use the model ${slug} (it may use: ${allowed})`, {
    details: [{ field: 'model', message: `this key may use only ${allowed}, not ${slug}` }],
  });
}

/** assertModelAllowed as an onRequest hook, after authHook, for a route of one model (`/v1/<slug>`, `/v2/<slug>`). */
export function modelAccessHook(slug: string) {
  return async function modelAccess(req: FastifyRequest, _reply: FastifyReply): Promise<void> {
    assertModelAllowed(requireCaller(req), slug);
  };
}
