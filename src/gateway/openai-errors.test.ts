/** The contract's error body in OpenAI's envelope: type by status, param from the first detail, our code. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ERRORS, type ErrorCode } from '../contract/errors.js';
import { openAiErrorType, toOpenAiError } from './openai-errors.js';

it('gives every code of the error table an OpenAI type, by status, with a spent balance as insufficient_quota', () => {
  const byStatus = new Map<number, Set<string>>();
  for (const code of Object.keys(ERRORS) as ErrorCode[]) {
    const status: number = ERRORS[code].status;
    if (code !== 'insufficient_credits') byStatus.set(status, (byStatus.get(status) ?? new Set()).add(openAiErrorType(code)));
  }
  assert.deepEqual(Object.fromEntries([...byStatus].map(([s, t]) => [s, [...t]])), {
    400: ['invalid_request_error'],
    401: ['authentication_error'],
    403: ['permission_error'],
    404: ['invalid_request_error'],
    408: ['invalid_request_error'],
    409: ['invalid_request_error'],
    413: ['invalid_request_error'],
    422: ['invalid_request_error'],
    429: ['rate_limit_error'],
    431: ['invalid_request_error'],
    499: ['invalid_request_error'],
    500: ['server_error'],
    502: ['server_error'],
    503: ['service_unavailable_error'],
    504: ['server_error'],
  });
  assert.equal(openAiErrorType('insufficient_credits'), 'insufficient_quota');
});

it('puts the message, the first field at fault and our code in the envelope', () => {
  const details = [{ field: 'n', message: 'must be at most 4' }, { field: 'size', message: 'bad' }];
  assert.deepEqual(toOpenAiError({ error: 'n: must be at most 4', code: 'validation_failed', request_id: 'r', details }), {
    error: { message: 'n: must be at most 4', type: 'invalid_request_error', param: 'n', code: 'validation_failed' },
  });
  assert.deepEqual(toOpenAiError({ error: 'Missing or invalid API key', code: 'unauthorized', request_id: 'r' }).error.param, null);
});
