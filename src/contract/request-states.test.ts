import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REQUEST_STATUSES, TERMINAL, canTransition, isRequestStatus, isTerminal, type RequestStatus } from './request-states.js';

// The table from the design (Request states), written out independently of the code:
// every pair not listed here must be refused.
const EXPECTED: ReadonlyArray<[RequestStatus, RequestStatus]> = [
  ['QUEUED', 'PROCESSING'],
  ['QUEUED', 'CANCELLED'],
  ['QUEUED', 'FAILED'],
  ['PROCESSING', 'COMPLETED'],
  ['PROCESSING', 'FAILED'],
  ['PROCESSING', 'CANCELLED'],
  ['PROCESSING', 'QUEUED'],
  ['PROCESSING', 'PROCESSING'], // a takeover by another worker
];

test('canTransition allows exactly the design table', () => {
  const allowed = new Set(EXPECTED.map(([a, b]) => `${a}>${b}`));
  for (const from of REQUEST_STATUSES) {
    for (const to of REQUEST_STATUSES) {
      assert.equal(canTransition(from, to), allowed.has(`${from}>${to}`), `${from} → ${to}`);
    }
  }
});

test('terminal states are final and are exactly COMPLETED, FAILED, CANCELLED', () => {
  assert.deepEqual([...TERMINAL].sort(), ['CANCELLED', 'COMPLETED', 'FAILED']);
  for (const s of REQUEST_STATUSES) {
    assert.equal(isTerminal(s), TERMINAL.has(s));
    if (isTerminal(s)) for (const to of REQUEST_STATUSES) assert.equal(canTransition(s, to), false, `${s} → ${to}`);
  }
});

test('isRequestStatus recognises only the five states', () => {
  for (const s of REQUEST_STATUSES) assert.ok(isRequestStatus(s));
  for (const s of ['queued', 'RUNNING', '', 'SUCCEEDED']) assert.equal(isRequestStatus(s), false, s);
});
