/** GET /v1/get-user-credits: the caller's balance (Segmind's route name). */
import type { FastifyInstance } from 'fastify';
import { balance } from '../../accounts/ledger.js';
import { authHook, requireCaller } from '../auth.js';
import type { AppDeps } from '../app.js';
import { microToCredits } from '../../billing/pricing.js';

export function registerAccountRoutes(app: FastifyInstance, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  app.get('/v1/get-user-credits', { onRequest: auth }, async (req) => {
    const caller = requireCaller(req);
    const micro = await balance(deps.db, caller.accountId);
    return { credits: Number(microToCredits(micro)), account_id: caller.accountId };
  });
}
