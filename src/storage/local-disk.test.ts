import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { LocalDiskStorage } from './local-disk.js';

describe('LocalDiskStorage', () => {
  const dirs: string[] = [];
  const fresh = () => {
    const d = mkdtempSync(join(tmpdir(), 'klein-disk-'));
    dirs.push(d);
    return { dir: d, store: new LocalDiskStorage(d) };
  };
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('writes a new key in place, making its folder, and reads it back', async () => {
    const { dir, store } = fresh();
    await store.put('outputs/a.png', Buffer.from('first'));
    assert.equal((await store.get('outputs/a.png'))?.toString(), 'first');
    assert.deepEqual(readdirSync(join(dir, 'objects', 'outputs')), ['a.png']);
    // A folder deleted behind the store's back is made again.
    rmSync(join(dir, 'objects', 'outputs'), { recursive: true });
    await store.put('outputs/b.png', Buffer.from('second'));
    assert.equal((await store.get('outputs/b.png'))?.toString(), 'second');
  });

  it('replaces an existing key whole, leaving no temporary file', async () => {
    const { dir, store } = fresh();
    await store.put('outputs/a.png', Buffer.from('x'.repeat(100_000)));
    await store.put('outputs/a.png', Buffer.from('shorter'));
    assert.equal((await store.get('outputs/a.png'))?.toString(), 'shorter');
    assert.deepEqual(readdirSync(join(dir, 'objects', 'outputs')), ['a.png']);
  });

  it('two writers of one key at once leave one of the two whole', async () => {
    const { dir, store } = fresh();
    const a = Buffer.alloc(2_000_000, 'a');
    const b = Buffer.alloc(1_000_000, 'b');
    for (let round = 0; round < 5; round++) {
      await store.delete('outputs/r.png');
      await Promise.all([store.put('outputs/r.png', a), store.put('outputs/r.png', b)]);
      const got = await store.get('outputs/r.png');
      assert.ok(got?.equals(a) || got?.equals(b), `round ${round}: ${got?.length} bytes, not one of the two writes`);
      assert.deepEqual(readdirSync(join(dir, 'objects', 'outputs')), ['r.png']);
    }
  });

  it('a write that cannot be made fails and leaves nothing, and keys cannot leave the folder', async () => {
    const { dir, store } = fresh();
    mkdirSync(join(dir, 'objects'), { recursive: true });
    writeFileSync(join(dir, 'objects', 'inputs'), 'a file where a folder should be');
    await assert.rejects(store.put('inputs/x/0.png', Buffer.from('p')), /ENOTDIR|EEXIST/);
    assert.deepEqual(readdirSync(join(dir, 'objects')), ['inputs']);
    for (const key of ['../x', 'outputs/../../x', '/etc/passwd', '', 'a//b']) {
      await assert.rejects(store.put(key, Buffer.from('p')), /invalid storage key/);
    }
    assert.equal(await store.get('outputs/none.png'), null);
  });
});
