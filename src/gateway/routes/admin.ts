/**
 * Admin routes (an admin key, else 403): accounts, credits and usage over HTTP, the same
 * operations as the `klein` command.
 */
import type { FastifyInstance } from 'fastify';
import { adminOnly, authHook } from '../auth.js';
import type { AppDeps } from '../app.js';
import { ApiError } from '../errors.js';
import { grant, balance, usage } from '../../accounts/ledger.js';
import { creditsToMicro, microToCredits } from '../../contract/pricing.js';

export function registerAdminRoutes(app: FastifyInstance, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const hooks = { onRequest: auth, preHandler: adminOnly };

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
    const micro = typeof raw === 'number' || typeof raw === 'string' ? creditsToMicro(String(raw)) : null;
    if (micro === null || micro <= 0) {
      throw new ApiError('validation_failed', 'credits: must be a positive decimal number', {
        details: [{ field: 'credits', message: 'must be a positive decimal number with at most 6 places' }],
      });
    }
    const exists = await deps.db.selectFrom('accounts').select('id').where('id', '=', req.params.id).executeTakeFirst();
    if (!exists) throw new ApiError('not_found', `No account ${req.params.id}`);
    await grant(deps.db, req.params.id, micro, 'admin http');
    return { account_id: req.params.id, credits: microToCredits(await balance(deps.db, req.params.id)) };
  });

  app.get<{ Params: { id: string } }>('/admin/accounts/:id/usage', hooks, async (req) => {
    const exists = await deps.db.selectFrom('accounts').select('id').where('id', '=', req.params.id).executeTakeFirst();
    if (!exists) throw new ApiError('not_found', `No account ${req.params.id}`);
    return usage(deps.db, req.params.id, {});
  });
}
