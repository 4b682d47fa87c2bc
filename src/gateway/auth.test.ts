import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { tempDb, type TempDb } from '../../test/support/temp-db.js';
import { createKey } from '../accounts/keys.js';
import { ApiError } from '../contract/errors.js';
import { assertModelAllowed, authHook, type Caller, modelAccessHook } from './auth.js';

/** A request as the hooks read it: its headers, and the caller authHook sets. */
const request = (key: string) => ({ headers: { 'x-api-key': key } }) as unknown as FastifyRequest;
const reply = {} as FastifyReply;

describe('authHook and the models a key may use', () => {
  let t: TempDb;
  beforeEach(async () => {
    t = await tempDb('sqlite');
  });
  afterEach(async () => t.close());

  test("the caller carries its key's models: the list, or null for every model", async () => {
    const auth = authHook(t.db, { rpm: 60, concurrency: 2 });
    const limited = await createKey(t.db, { models: ['flux-2-klein-9b', 'flux-2-klein-4b'] });
    const every = await createKey(t.db, {});
    const a = request(limited.key);
    await auth(a, reply);
    assert.deepEqual(a.caller?.models, ['flux-2-klein-9b', 'flux-2-klein-4b']);
    assert.equal(a.caller?.keyId, limited.key_id);
    const b = request(every.key);
    await auth(b, reply);
    assert.equal(b.caller?.models, null);
    assert.equal(b.caller?.keyId, every.key_id);
  });

  test('modelAccessHook lets a listed model through and refuses another with 403', async () => {
    const auth = authHook(t.db, { rpm: 60, concurrency: 2 });
    const k = await createKey(t.db, { models: ['flux-2-klein-9b'] });
    const req = request(k.key);
    await auth(req, reply);
    await modelAccessHook('flux-2-klein-9b')(req, reply);
    await assert.rejects(modelAccessHook('flux-2-klein-4b')(req, reply), (err: unknown) => err instanceof ApiError && err.status === 403);
  });
});

describe('assertModelAllowed', () => {
  const caller = (models: readonly string[] | null): Caller => ({ accountId: 'acct_1', keyId: 'key_1', isAdmin: false, rpm: 60, concurrency: 2, balanceMicro: 0, models });

  test('a key without a list may use every model; one with a list, the models on it', () => {
    assert.doesNotThrow(() => assertModelAllowed(caller(null), 'flux-2-klein-4b'));
    assert.doesNotThrow(() => assertModelAllowed(caller(null), 'anything-served'));
    assert.doesNotThrow(() => assertModelAllowed(caller(['flux-2-klein-4b', 'flux-2-klein-9b']), 'flux-2-klein-9b'));
  });

  test('another model is a 403 forbidden that names it and the models the key may use', () => {
    assert.throws(
      () => assertModelAllowed(caller(['flux-2-klein-4b', 'flux-2-klein-4b-base']), 'flux-2-klein-9b'),
      (err: unknown) => {
        assert.ok(err instanceof ApiError);
        assert.equal(err.status, 403);
        assert.equal(err.code, 'forbidden');
        assert.equal(err.message, 'This key may not use the model flux-2-klein-9b (it may use: flux-2-klein-4b, flux-2-klein-4b-base)');
        assert.deepEqual(err.details, [{ field: 'model', message: 'this key may use only flux-2-klein-4b, flux-2-klein-4b-base, not flux-2-klein-9b' }]);
        return true;
      },
    );
    // A prefix of a listed slug is another model.
    assert.throws(() => assertModelAllowed(caller(['flux-2-klein-4b-base']), 'flux-2-klein-4b'), ApiError);
  });
});
