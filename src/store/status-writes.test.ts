/**
 * One request state machine: the product's code writes `requests.status` in one function
 * only (`statusUpdate` in requests.ts, which checks contract/request-states.ts), and
 * inserts rows in one (`createRequest`, always QUEUED). A new UPDATE of the table anywhere
 * else, or one in requests.ts that sets a status without going through the table, fails
 * here. Read from the source, as the layer test reads imports.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const SRC = 'src';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return name.endsWith('.ts') && !name.endsWith('.test.ts') ? [p] : [];
  });
}

/** The top-level functions of a file, by name, with their text. */
function functions(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const starts = [...text.matchAll(/^(?:export )?(?:async )?function (\w+)/gm)];
  starts.forEach((m, i) => out.set(m[1]!, text.slice(m.index, starts[i + 1]?.index ?? text.length)));
  return out;
}

const WRITES = /\b(updateTable|insertInto)\(\s*'requests'\s*\)/g;

test('only store/requests.ts writes request rows', () => {
  const writers = sources(SRC)
    .filter((f) => WRITES.test(readFileSync(f, 'utf8')))
    .map((f) => relative(SRC, f));
  assert.deepEqual(writers, ['store/requests.ts']);
});

test('in it, statuses are set by statusUpdate alone, and rows are created QUEUED', () => {
  const fns = functions(readFileSync(join(SRC, 'store/requests.ts'), 'utf8'));
  const writing = [...fns].filter(([, body]) => body.match(WRITES)).map(([name]) => name);
  assert.ok(writing.includes('statusUpdate') && writing.includes('createRequest'), writing.join(', '));
  for (const [name, body] of fns) {
    if (!body.match(WRITES) || name === 'statusUpdate') continue;
    if (name === 'createRequest') {
      assert.match(body, /status: 'QUEUED'/, 'createRequest inserts QUEUED rows');
      assert.equal(body.match(/status:/g)?.length, 1, 'createRequest sets no other status');
      continue;
    }
    assert.doesNotMatch(body, /\bstatus\s*:/, `${name} writes a status without statusUpdate`);
  }
  assert.match(fns.get('statusUpdate')!, /canTransition\(/, 'statusUpdate checks the state table');
  // Every other function that changes a status builds its UPDATE with statusUpdate.
  for (const name of ['claimNext', 'claimById', 'claimBatch', 'unclaim', 'transition', 'recoverOnStartup', 'requeueClaim']) {
    assert.match(fns.get(name) ?? '', /statusUpdate\(/, `${name} goes through statusUpdate`);
  }
});
