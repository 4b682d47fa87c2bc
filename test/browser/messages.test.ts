/** What the playground says for each status of contract §2 (web/src/messages.ts). */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEnd, describeFailure, type Failure } from '../../web/src/messages.js';

const failure = (status: number, message: string, extra: Partial<Failure> = {}): Failure => ({
  status,
  message,
  code: '',
  requestId: 'req-1',
  details: [],
  retryAfter: null,
  ...extra,
});

it('names the status and what to do, with the server message where it carries facts', () => {
  const cases: Array<[Failure, RegExp]> = [
    [failure(400, 'Invalid request parameters', { details: [{ field: 'steps', message: 'must be at most 100' }] }), /^The server refused a parameter \(400\): steps must be at most 100\.$/],
    [failure(400, 'x', { details: [{ field: 'steps', message: 'a' }, { field: 'cfg', message: 'b' }] }), /^The server refused 2 parameters \(400\): steps a; cfg b\.$/],
    [failure(400, 'A reference image could not be decoded'), /^The server refused the request \(400\): A reference image could not be decoded\.$/],
    [failure(401, 'Missing or invalid API key'), /^The API key was refused \(401\): .*klein keys create/],
    [failure(403, 'This key may not do this'), /\(403\): This key may not do this\./],
    [failure(404, 'No request abc'), /^Not found \(404\): No request abc\./],
    [failure(406, 'Insufficient credits: this request costs 0.03 credits and the balance is 0'), /^Not enough credits \(406\): Insufficient credits: this request costs 0\.03 credits and the balance is 0\. /],
    [failure(408, 'The request was not received in time; the connection is closed'), /^The request did not reach the server in time \(408\): .*Check the connection/],
    [failure(409, 'The request was cancelled before it finished; it was not charged'), /^The request was cancelled \(409\): .* Nothing was charged\.$/],
    [failure(431, 'The request headers are too large'), /headers are too large .*\(431\)/],
    [failure(413, 'The body is larger than this server accepts'), /too large .*\(413\).*smaller reference images/],
    [failure(429, 'Rate limit of 1 requests per minute reached', { retryAfter: 42 }), /\(429\): Rate limit of 1 requests per minute reached\. Try again in 42 seconds\.$/],
    [failure(429, 'Too many concurrent requests', { retryAfter: 1 }), /Try again in 1 second\.$/],
    [failure(500, 'Internal server error'), /bug \(500\) \(request req-1\)/],
    [failure(502, 'The engine ran out of GPU memory'), /^No engine could run this \(502\): The engine ran out of GPU memory\. Nothing was charged/],
    [failure(503, 'The model is loading; try again shortly', { retryAfter: 5 }), /starting or shutting down \(503\): .* Try again in 5 seconds\.$/],
    [failure(504, 'The request did not finish in time'), /did not finish in time \(504\).*not charged/],
    [failure(418, 'teapot'), /^The server answered 418: teapot \(request req-1\)\.$/],
  ];
  for (const [f, want] of cases) assert.match(describeFailure(f), want, `status ${f.status}`);
});

it('does not double a final stop the server already wrote', () => {
  assert.equal(describeFailure(failure(404, 'Gone.')).includes('Gone..'), false);
});

it('says how a request ended without an image', () => {
  assert.equal(describeEnd('CANCELLED', null), 'Cancelled. Nothing was charged.');
  assert.equal(describeEnd('FAILED', { code: 'engine_failed', message: 'boom' }), 'Generation failed: boom (engine_failed). Nothing was charged.');
  assert.equal(describeEnd('FAILED', null), 'Generation failed: no reason given. Nothing was charged.');
});
