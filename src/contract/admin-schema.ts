/**
 * The admin routes' body and answers (an admin key's view of accounts, credits and usage):
 * the routes' schemas, the OpenAPI components named by their `$id`, and their `Static`
 * types. Credits are decimal strings here, as the ledger's micro-credits print exactly.
 */
import Type, { type Static } from 'typebox';
import { REQUEST_STATUSES } from './request-states.js';

const CreditsText = Type.String({ description: 'Credits, as an exact decimal (up to 6 places)', pattern: '^-?[0-9]+(\\.[0-9]{1,6})?$' });

export const AccountList = Type.Object(
  {
    accounts: Type.Array(
      Type.Object({
        id: Type.String(),
        name: Type.Union([Type.String(), Type.Null()]),
        credits: CreditsText,
        rpm: Type.Union([Type.Integer(), Type.Null()], { description: 'Requests per minute; null: the server default' }),
        concurrency: Type.Union([Type.Integer(), Type.Null()], { description: 'Concurrent requests; null: the server default' }),
        created_at: Type.Integer({ description: 'Epoch milliseconds' }),
      }),
    ),
  },
  { $id: 'AccountList', description: 'Every account, oldest first' },
);

export const CreditGrant = Type.Object(
  {
    credits: Type.Union([Type.Number(), Type.String()], {
      description: 'Credits to add: a positive decimal number with at most 6 places, as a JSON number or a string (a string keeps every digit)',
    }),
  },
  { $id: 'CreditGrant', description: 'Body of POST /admin/accounts/{id}/credits' },
);

export const CreditBalance = Type.Object(
  { account_id: Type.String(), credits: CreditsText },
  { $id: 'CreditBalance', description: "The account's balance after the grant" },
);

const Micro = (description: string) => Type.Integer({ description: `${description}, in micro-credits (1e-6)` });

export const Usage = Type.Object(
  {
    account_id: Type.String(),
    since: Type.Integer({ description: 'Epoch milliseconds the summary starts at (0: everything kept)' }),
    balance_micro: Micro('Spendable balance'),
    held_micro: Micro('Reserved for requests in flight'),
    granted_micro: Micro('Granted'),
    charged_micro: Micro('What settled requests cost'),
    refunded_micro: Micro('What failed and cancelled requests got back'),
    requests: Type.Object(Object.fromEntries(REQUEST_STATUSES.map((s) => [s, Type.Optional(Type.Integer())])), {
      description: 'Request rows by status (rows older than the retention are gone; the ledger is not)',
    }),
    settled_requests: Type.Integer(),
  },
  { $id: 'Usage', description: "An account's requests and money" },
);

/** The key routes' schemas (POST and GET /admin/keys), components like the others. */
const KeyModels = Type.Union(
  [Type.Array(Type.String({ description: 'A served model slug' }), { minItems: 1, maxItems: 64 }), Type.Null()],
  { description: 'The served models (slugs) the key may use; null: every model the server serves (contract §2: another model is a 403)' },
);

export const KeyCreation = Type.Object(
  {
    account_id: Type.Optional(Type.String({ description: 'Add the key to this existing account; absent: a new account' })),
    name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()], { description: 'A name to recognise the key (and a new account) by' })),
    credits: Type.Optional(
      Type.Union([Type.Number(), Type.String()], {
        description: 'A new account starts with these credits; an existing one gets them added. A non-negative decimal with at most 6 places, as a JSON number or a string; default 0',
      }),
    ),
    rpm: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: "The account's requests per minute; null: the server default" })),
    concurrency: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: "The account's concurrent requests; null: the server default" })),
    admin: Type.Optional(Type.Boolean({ description: 'The key may use the admin routes; default false' })),
    models: Type.Optional(KeyModels),
  },
  { $id: 'KeyCreation', additionalProperties: false, description: 'Body of POST /admin/keys (the options of `klein keys create`)' },
);

export const CreatedKey = Type.Object(
  {
    key: Type.String({ description: 'The key itself: shown this once, only its hash is stored' }),
    key_id: Type.String(),
    account_id: Type.String(),
    prefix: Type.String({ description: 'What lists show instead of the key, e.g. kl_Ab12Cd…' }),
    name: Type.Union([Type.String(), Type.Null()]),
    admin: Type.Boolean(),
    models: KeyModels,
    credits: CreditsText,
    rpm: Type.Union([Type.Integer(), Type.Null()], { description: 'Requests per minute; null: the server default' }),
    concurrency: Type.Union([Type.Integer(), Type.Null()], { description: 'Concurrent requests; null: the server default' }),
    webhook_secret: Type.String({ description: "The account's webhook signing secret" }),
  },
  { $id: 'CreatedKey', description: 'The new key and its account' },
);

const Millis = (description: string) => Type.Union([Type.Integer(), Type.Null()], { description: `${description}, epoch milliseconds` });

export const KeyList = Type.Object(
  {
    keys: Type.Array(
      Type.Object({
        key_id: Type.String(),
        prefix: Type.String({ description: 'The key is never shown again, only this' }),
        name: Type.Union([Type.String(), Type.Null()]),
        account_id: Type.String(),
        admin: Type.Boolean(),
        models: KeyModels,
        status: Type.Union([Type.Literal('active'), Type.Literal('revoked')]),
        created_at: Type.Integer({ description: 'Epoch milliseconds' }),
        revoked_at: Millis('When it was revoked (null: active)'),
        last_used_at: Millis('Its last use, to the minute (null: never)'),
      }),
    ),
  },
  { $id: 'KeyList', description: 'Keys, oldest first: prefixes only' },
);

export const KeyListQuery = Type.Object({
  account_id: Type.Optional(Type.String({ description: "Only this account's keys" })),
});

export type AccountList = Static<typeof AccountList>;
export type CreditGrant = Static<typeof CreditGrant>;
export type CreditBalance = Static<typeof CreditBalance>;
export type Usage = Static<typeof Usage>;
export type KeyCreation = Static<typeof KeyCreation>;
export type CreatedKey = Static<typeof CreatedKey>;
export type KeyList = Static<typeof KeyList>;
