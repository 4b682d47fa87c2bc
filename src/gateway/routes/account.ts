/** GET /v1/get-user-credits: the caller's balance (Segmind's route name). */
import { balance } from '../../accounts/ledger.js';
import { Credits } from '../../contract/responses.js';
import { authHook, requireCaller } from '../auth.js';
import type { App, AppDeps } from '../app.js';
import { microToCredits } from '../../billing/pricing.js';
import { errorResponses, json, ref, SECURED } from '../route-schema.js';

const schema = {
  operationId: 'getUserCredits',
  tags: ['account'],
  summary: "The caller's balance",
  security: SECURED,
  response: { 200: json(ref(Credits), 'Balance'), ...errorResponses(401, 500) },
};

export function registerAccountRoutes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  app.get('/v1/get-user-credits', { schema, onRequest: auth }, async (req) => {
    const caller = requireCaller(req);
    const micro = await balance(deps.db, caller.accountId);
    return { credits: Number(microToCredits(micro)), account_id: caller.accountId };
  });
}
