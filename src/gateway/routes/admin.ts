/**
 * Admin routes (an admin key, else 403): accounts, credits and usage over HTTP, the same
 * operations as the `klein` command. The admin check and the rate limit run as onRequest
 * hooks, before any body is read, and bodies are small (the app's default limit).
 */
import type { FastifyInstance } from 'fastify';
import { adminOnly, authHook } from '../auth.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import type { AppDeps } from '../app.js';
import { ApiError } from '../../contract/errors.js';
import { BalanceOverflow, findBalance, grant, balance, usage, MAX_BALANCE_MICRO } from '../../accounts/ledger.js';
import { CREDITS_PATTERN, creditsToMicro, microToCredits } from '../../billing/pricing.js';

export function registerAdminRoutes(app: FastifyInstance, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const hooks = { onRequest: [auth, adminOnly, rateLimitHook(deps.limiter)] };

  app.get('/admin/accounts', hooks, async () => {
    const rows = await deps.db
      .selectFrom('accounts')
      .select(['id', 'name', 'balance_micro', 'rpm', 'concurrency', 'created_at'])
      .orderBy('created_at')
      .execute();
    return {
      accounts: rows.map((r) => ({
        id: r.id,
        name: r.name,
        credits: microToCredits(Number(r.balance_micro)),
        rpm: r.rpm,
        concurrency: r.concurrency,
        created_at: r.created_at,
      })),
    };
  });

  app.post<{ Params: { id: string }; Body: unknown }>('/admin/accounts/:id/credits', hooks, async (req) => {
    const body = req.body as { credits?: unknown } | null;
    const raw = body && typeof body === 'object' ? body.credits : undefined;
    const text = typeof raw === 'number' || typeof raw === 'string' ? String(raw) : null;
    const micro = text === null ? null : creditsToMicro(text);
    const beyond = (roomMicro: number) => {
      const message = `would lift the balance above the largest an account can hold, ${microToCredits(MAX_BALANCE_MICRO)} credits (at most ${microToCredits(roomMicro)} more now)`;
      return new ApiError('validation_failed', `credits: ${message}`, { details: [{ field: 'credits', message }] });
    };
    if (micro === null || micro <= 0) {
      // Well written but beyond what creditsToMicro can hold: the bound, not "malformed".
      if (text !== null && micro === null && CREDITS_PATTERN.test(text)) {
        throw beyond(MAX_BALANCE_MICRO - ((await findBalance(deps.db, req.params.id)) ?? 0));
      }
      throw new ApiError('validation_failed', 'credits: must be a positive decimal number', {
        details: [{ field: 'credits', message: 'must be a positive decimal number with at most 6 places' }],
      });
    }
    const exists = await deps.db.selectFrom('accounts').select('id').where('id', '=', req.params.id).executeTakeFirst();
    if (!exists) throw new ApiError('not_found', `No account ${req.params.id}`);
    await grant(deps.db, req.params.id, micro, 'admin http').catch((err: unknown) => {
      throw err instanceof BalanceOverflow ? beyond(MAX_BALANCE_MICRO - err.balanceMicro) : err;
    });
    return { account_id: req.params.id, credits: microToCredits(await balance(deps.db, req.params.id)) };
  });

  app.get<{ Params: { id: string } }>('/admin/accounts/:id/usage', hooks, async (req) => {
    const exists = await deps.db.selectFrom('accounts').select('id').where('id', '=', req.params.id).executeTakeFirst();
    if (!exists) throw new ApiError('not_found', `No account ${req.params.id}`);
    return usage(deps.db, req.params.id, {});
  });
}
