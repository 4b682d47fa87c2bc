/**
 * Seeded random LoRA files for the `tiny` miniatures, written once per test file by the
 * engine's own layouts (test/clients/make_loras.py): `fox` (ai-toolkit layout) and `kohya`
 * (kohya layout) fit `tiny`; `nine` is drawn for `tiny-9b`, whose layers are wider, so it
 * does not fit `tiny`. `serve` puts some of them on a loopback file server that honours Range
 * (a server under test reaches it with KLEIN_ALLOW_NETWORKS=127.0.0.0/8).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFileServer, type FileServer } from './safetensors-files.js';

const ROOT = new URL('../..', import.meta.url).pathname;

export type TestLora = 'fox' | 'kohya' | 'nine';

export interface TestLoras {
  /** The folder holding `<name>.safetensors`. */
  dir: string;
  read(name: TestLora): Buffer;
  /**
   * Serves the files at `/<path>` for each `path: name` (several paths may serve one file),
   * or given bytes (`variant`'s).
   */
  serve(paths: Record<string, TestLora | Buffer>): Promise<FileServer>;
}

/**
 * The same adapter with one low mantissa bit of its first weight flipped: another file
 * (another hash), which no engine has loaded yet, acting all but the same.
 */
export function variant(file: Buffer): Buffer {
  const out = Buffer.from(file);
  out[8 + Number(out.readBigUInt64LE(0))]! ^= 1;
  return out;
}

export function makeTestLoras(): TestLoras {
  const dir = mkdtempSync(join(tmpdir(), 'klein-test-loras-'));
  execFileSync(join(ROOT, 'engine/.venv/bin/python'), [join(ROOT, 'test/clients/make_loras.py'), dir], { stdio: 'ignore' });
  const read = (name: TestLora) => readFileSync(join(dir, `${name}.safetensors`));
  return {
    dir,
    read,
    serve: (paths) =>
      startFileServer({ honourRange: true, files: Object.fromEntries(Object.entries(paths).map(([p, file]) => [`/${p}`, Buffer.isBuffer(file) ? file : read(file)])) }),
  };
}
