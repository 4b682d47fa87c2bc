import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { LinkSigner, linkSecrets } from './signed-links.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const T = 1_800_000_000_000;

function parts(link: string): { path: string; expires: string; sig: string } {
  const u = new URL(link, 'http://x');
  return { path: u.pathname, expires: u.searchParams.get('expires')!, sig: u.searchParams.get('sig')! };
}

describe('signed links', () => {
  it('verifies its own links until they expire, and nothing else', () => {
    const s = new LinkSigner([A]);
    const link = s.sign('/v2/requests/r1/output', 3600, T);
    const { path, expires, sig } = parts(link);
    assert.equal(Number(expires), T / 1000 + 3600);
    assert.equal(s.check(path, expires, sig, T), 'valid');
    assert.equal(s.check(path, expires, sig, T + 3600_000), 'expired');
    assert.equal(s.check('/v2/requests/r2/output', expires, sig, T), 'invalid', 'moved to another request');
    assert.equal(s.check(path, String(Number(expires) + 1), sig, T), 'invalid', 'made to live longer');
    const flipped = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
    assert.equal(s.check(path, expires, flipped, T), 'invalid');
    for (const [e, g] of [[undefined, sig], [expires, undefined], ['-1', sig], ['1e9', sig], [expires, `${sig}=`], [expires, sig.slice(1)], [['1'], sig]] as const) {
      assert.equal(s.check(path, e, g, T), 'invalid', `${String(e)} ${String(g)}`);
    }
    assert.equal(new LinkSigner([B]).check(path, expires, sig, T), 'invalid', 'another secret');
  });

  it('rotates: the first secret signs, every secret verifies', () => {
    const old = new LinkSigner([A]).sign('/x', 60, T);
    const rotated = new LinkSigner([B, A]);
    assert.equal(rotated.check(parts(old).path, parts(old).expires, parts(old).sig, T), 'valid');
    const fresh = parts(rotated.sign('/x', 60, T));
    assert.equal(new LinkSigner([B]).check(fresh.path, fresh.expires, fresh.sig, T), 'valid');
    assert.equal(new LinkSigner([A]).check(fresh.path, fresh.expires, fresh.sig, T), 'invalid');
  });

  it('refuses short secrets', () => {
    assert.throws(() => new LinkSigner([]), /at least 32/);
    assert.throws(() => new LinkSigner(['short']), /at least 32/);
  });

  it('keeps a generated secret in the data directory (one, private, the same after a restart); configured secrets win', () => {
    const dir = mkdtempSync(join(tmpdir(), 'klein-links-'));
    try {
      const first = linkSecrets([], join(dir, 'data'));
      assert.equal(first.length, 1);
      assert.ok(first[0]!.length >= 32);
      assert.deepEqual(linkSecrets([], join(dir, 'data')), first);
      assert.equal(statSync(join(dir, 'data', 'link-secret')).mode & 0o777, 0o600);
      assert.deepEqual(linkSecrets([B, A], join(dir, 'data')), [B, A]);
      writeFileSync(join(dir, 'data', 'link-secret'), 'short\n');
      assert.throws(() => linkSecrets([], join(dir, 'data')), /no usable link secret/);
      assert.equal(readFileSync(join(dir, 'data', 'link-secret'), 'utf8'), 'short\n', 'never overwritten');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
