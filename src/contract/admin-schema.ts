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

export type AccountList = Static<typeof AccountList>;
export type CreditGrant = Static<typeof CreditGrant>;
export type CreditBalance = Static<typeof CreditBalance>;
export type Usage = Static<typeof Usage>;
