/**
 * Admin routes (an admin key, else 403): accounts, credits, usage and keys over HTTP, the
 * same operations as the `klein` command. The admin check and the rate limit run as onRequest
 * hooks, before any body is read, and bodies are small (the app's default limit).
 */
import Type from 'typebox';
import { adminOnly, authHook } from '../auth.js';
import { rateLimitHook } from '../rate-limit-hook.js';
import type { App, AppDeps } from '../app.js';
import { ApiError } from '../../contract/errors.js';
import { AccountList, CreatedKey, CreditBalance, CreditGrant, KeyCreation, KeyList, KeyListQuery, Usage } from '../../contract/admin-schema.js';
import { BalanceOverflow, findBalance, grant, balance, usage, MAX_BALANCE_MICRO } from '../../accounts/ledger.js';
import { createKey, keyModelsProblem, listKeys } from '../../accounts/keys.js';
import { CREDITS_PATTERN, creditsToMicro, microToCredits } from '../../billing/pricing.js';
import { errorResponses, json, RATE_LIMITED_HEADERS, ref, SECURED } from '../route-schema.js';

const tagged = { tags: ['admin'], security: SECURED };
const AccountParams = Type.Object({ id: Type.String({ description: 'The account id' }) });

const listSchema = {
  ...tagged,
  operationId: 'listAccounts',
  summary: 'Accounts (admin key)',
  response: { 200: json(ref(AccountList), 'Accounts', RATE_LIMITED_HEADERS), ...errorResponses(401, 403, 429, 500) },
};

const grantSchema = {
  ...tagged,
  operationId: 'grantCredits',
  summary: 'Grant credits (admin key)',
  params: AccountParams,
  body: ref(CreditGrant),
  response: { 200: json(ref(CreditBalance), 'New balance', RATE_LIMITED_HEADERS), ...errorResponses(400, 401, 403, 404, 408, 413, 429, 500) },
};

const usageSchema = {
  ...tagged,
  operationId: 'getAccountUsage',
  summary: 'Usage of an account (admin key)',
  params: AccountParams,
  response: { 200: json(ref(Usage), 'Usage', RATE_LIMITED_HEADERS), ...errorResponses(401, 403, 404, 429, 500) },
};

const createKeySchema = {
  ...tagged,
  operationId: 'createKey',
  summary: 'Create an API key (admin key)',
  body: ref(KeyCreation),
  response: { 201: json(ref(CreatedKey), 'The new key, shown this once', RATE_LIMITED_HEADERS), ...errorResponses(400, 401, 403, 404, 408, 413, 429, 500) },
};

const listKeysSchema = {
  ...tagged,
  operationId: 'listKeys',
  summary: 'API keys, prefixes only (admin key)',
  querystring: KeyListQuery,
  response: { 200: json(ref(KeyList), 'Keys', RATE_LIMITED_HEADERS), ...errorResponses(401, 403, 429, 500) },
};

/** A 400 for one field of an admin body. */
function invalid(field: string, message: string): ApiError {
  return new ApiError('validation_failed', `${field}: ${message}`, { details: [{ field, message }] });
}

export function registerAdminRoutes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const onRequest = [auth, adminOnly, rateLimitHook(deps.limiter)];

  app.get('/admin/accounts', { schema: listSchema, onRequest }, async () => {
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

  app.post('/admin/accounts/:id/credits', { schema: grantSchema, onRequest }, async (req) => {
    const text = String(req.body.credits);
    const micro = creditsToMicro(text);
    const beyond = (roomMicro: number) => {
      const message = `would lift the balance above the largest an account can hold, ${microToCredits(MAX_BALANCE_MICRO)} credits (at most ${microToCredits(roomMicro)} more now)`;
      return new ApiError('validation_failed', `credits: ${message}`, { details: [{ field: 'credits', message }] });
    };
    if (micro === null || micro <= 0) {
      // Well written but beyond what creditsToMicro can hold: the bound, not "malformed".
      if (micro === null && CREDITS_PATTERN.test(text)) {
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

  app.get('/admin/accounts/:id/usage', { schema: usageSchema, onRequest }, async (req) => {
    const summary = await usage(deps.db, req.params.id, {});
    if (!summary) throw new ApiError('not_found', `No account ${req.params.id}`);
    return summary;
  });

  app.post('/admin/keys', { schema: createKeySchema, onRequest }, async (req, reply) => {
    const body = req.body;
    const models = body.models ?? null;
    // Served now: a key for a model this server does not serve would only ever get 404s.
    const problem = models === null ? null : keyModelsProblem(models, deps.config.models);
    if (problem !== null) throw invalid('models', problem);
    const micro = creditsToMicro(String(body.credits ?? '0'));
    if (micro === null) throw invalid('credits', `must be a non-negative decimal number with at most 6 places, at most ${microToCredits(MAX_BALANCE_MICRO)}`);
    if (body.account_id !== undefined) {
      const exists = await deps.db.selectFrom('accounts').select('id').where('id', '=', body.account_id).executeTakeFirst();
      if (!exists) throw new ApiError('not_found', `No account ${body.account_id}`);
    }
    const k = await createKey(deps.db, {
      accountId: body.account_id,
      creditsMicro: micro,
      rpm: body.rpm,
      concurrency: body.concurrency,
      name: body.name ?? null,
      admin: body.admin ?? false,
      models,
    }).catch((err: unknown) => {
      if (err instanceof BalanceOverflow) throw invalid('credits', `would lift the balance above the largest an account can hold, ${microToCredits(MAX_BALANCE_MICRO)} credits`);
      throw err;
    });
    reply.code(201);
    return {
      key: k.key,
      key_id: k.key_id,
      account_id: k.account_id,
      prefix: k.prefix,
      name: k.name,
      admin: k.admin,
      models: k.models,
      credits: microToCredits(k.balance_micro),
      rpm: k.rpm,
      concurrency: k.concurrency,
      webhook_secret: k.webhook_secret,
    };
  });

  app.get('/admin/keys', { schema: listKeysSchema, onRequest }, async (req) => {
    const keys = await listKeys(deps.db, { accountId: req.query.account_id });
    return { keys: keys.map((k) => ({ ...k, status: k.revoked_at === null ? ('active' as const) : ('revoked' as const) })) };
  });
}
