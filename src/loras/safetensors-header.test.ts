/**
 * The header is read without the body: over HTTP with two Range requests, from a server that
 * ignores Range by cutting the body off after 8 + N bytes, through the SSRF guard on every
 * hop (a redirect to a blocked address is refused before any connection to it), and from
 * disk. Malformed files are refused as invalid_lora with the reason.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer, type Server as TcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../contract/errors.js';
import { parseAllowNetworks } from '../net/networks.js';
import { MAX_HEADER_BYTES, parseHeader, readFileHeader, readRemoteHeader } from './safetensors-header.js';
import { raw, safetensors, startFileServer, type FileServer } from '../../test/support/safetensors-files.js';

const loopback = parseAllowNetworks('127.0.0.1/32');
const GiB = 2 ** 30;
const limits = { field: 'loras[0].path', maxBytes: 2 * GiB };

async function refusal(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    return err;
  }
  assert.fail('not refused');
}

// 32 MiB of body behind a small header: a server that ignores Range must not send it all.
const big = safetensors({ 'transformer.a.lora_A.weight': { dtype: 'F32', shape: [2, 4 * 2 ** 20] }, 'transformer.a.lora_B.weight': { dtype: 'F32', shape: [8, 2] } });
const small = safetensors({ 'transformer.a.lora_A.weight': { dtype: 'BF16', shape: [4, 64] }, 'transformer.a.lora_B.weight': { dtype: 'BF16', shape: [32, 4] } }, { format: 'pt' });

describe('readRemoteHeader', () => {
  let ranged: FileServer;
  let plain: FileServer;
  let trap: TcpServer;
  let trapConnections = 0;
  let trapPort = 0;

  before(async () => {
    trap = createTcpServer((s) => {
      trapConnections++;
      s.destroy();
    });
    await new Promise<void>((r) => trap.listen(0, '127.0.0.2', r));
    trapPort = (trap.address() as AddressInfo).port;
    ranged = await startFileServer({
      honourRange: true,
      files: { '/big.safetensors': big, '/small.safetensors': small, '/tiny': Buffer.from([1, 2, 3]) },
      redirects: { '/moved': '/big.safetensors', '/evil': `http://127.0.0.2:${trapPort}/x.safetensors`, '/meta': 'http://169.254.169.254/latest/x.safetensors' },
    });
    plain = await startFileServer({ honourRange: false, files: { '/big.safetensors': big } });
  });
  after(async () => {
    await ranged.close();
    await plain.close();
    await new Promise((r) => trap.close(r));
  });

  const opts = { allow: loopback, field: 'loras[0].path', maxBytes: 2 * GiB, timeoutMs: 5000 };

  it('reads the header with two Range requests, taking 8 + N bytes of a 32 MiB file', async () => {
    const before = ranged.bytesSent();
    const h = await readRemoteHeader(`${ranged.base}/big.safetensors`, opts);
    assert.equal(h.fileBytes, big.length);
    assert.deepEqual(h.tensors.map((t) => [t.name, t.dtype, t.shape]), [
      ['transformer.a.lora_A.weight', 'F32', [2, 4 * 2 ** 20]],
      ['transformer.a.lora_B.weight', 'F32', [8, 2]],
    ]);
    assert.equal(h.received, 8 + h.headerBytes);
    assert.equal(ranged.bytesSent() - before, 8 + h.headerBytes);
    assert.deepEqual(ranged.ranges.slice(-2), ['bytes=0-7', `bytes=8-${7 + h.headerBytes}`]);
  });

  it('reads __metadata__', async () => {
    const h = await readRemoteHeader(`${ranged.base}/small.safetensors`, opts);
    assert.deepEqual(h.metadata, { format: 'pt' });
  });

  it('from a server that ignores Range, reads only the start of the body and hangs up', async () => {
    const h = await readRemoteHeader(`${plain.base}/big.safetensors`, opts);
    assert.equal(h.fileBytes, big.length);
    // Socket buffers take some megabytes before the server blocks; far less than the 32 MiB body.
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(plain.bytesSent() < big.length / 2, `the server sent ${plain.bytesSent()} of ${big.length} bytes`);
    assert.ok(h.received < big.length / 2);
  });

  it('follows a redirect, checking its target', async () => {
    const h = await readRemoteHeader(`${ranged.base}/moved`, opts);
    assert.equal(h.url, `${ranged.base}/big.safetensors`);
  });

  it('refuses a 302 to a blocked address without connecting to it', async () => {
    const err = await refusal(readRemoteHeader(`${ranged.base}/evil`, opts));
    assert.equal(err.code, 'url_blocked');
    assert.equal(trapConnections, 0);
    assert.equal((await refusal(readRemoteHeader(`${ranged.base}/meta`, opts))).code, 'url_blocked');
  });

  it('refuses loopback when the allow list does not open it', async () => {
    const err = await refusal(readRemoteHeader(`${ranged.base}/big.safetensors`, { ...opts, allow: [] }));
    assert.equal(err.code, 'url_blocked');
  });

  it('refuses a missing file and a file shorter than 8 bytes as invalid_lora', async () => {
    const missing = await refusal(readRemoteHeader(`${ranged.base}/nope.safetensors`, opts));
    assert.equal(missing.code, 'invalid_lora');
    assert.match(missing.message, /answered 404/);
    const tiny = await refusal(readRemoteHeader(`${ranged.base}/tiny`, opts));
    assert.match(tiny.message, /shorter than 8 bytes/);
  });

  it('refuses a file over the size cap from its header, before its body', async () => {
    const err = await refusal(readRemoteHeader(`${ranged.base}/big.safetensors`, { ...opts, maxBytes: 1_000_000 }));
    assert.equal(err.code, 'invalid_lora');
    assert.match(err.message, /up to 1000000 bytes/);
  });

  it('times out', async () => {
    const slow = await startFileServer({ honourRange: true, files: { '/a.safetensors': small }, delayMs: 2000 });
    try {
      const err = await refusal(readRemoteHeader(`${slow.base}/a.safetensors`, { ...opts, timeoutMs: 200 }));
      assert.match(err.message, /timed out/);
    } finally {
      await slow.close();
    }
  });
});

describe('parseHeader refuses malformed headers', () => {
  const header = (obj: unknown, dataBytes = 0) => raw(JSON.stringify(obj), Buffer.alloc(dataBytes));
  const parse = (file: Buffer, actual = file.length) => parseHeader(file.subarray(8, 8 + Number(file.readBigUInt64LE(0))), limits, actual);
  const why = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof ApiError && err.code === 'invalid_lora', String(err));
      return err.message;
    }
    assert.fail('not refused');
  };

  it('bad JSON, not an object, bad UTF-8', () => {
    assert.match(why(() => parseHeader(Buffer.from('{"a":'), limits)), /not UTF-8 JSON/);
    assert.match(why(() => parseHeader(Buffer.from('[1]'), limits)), /not a JSON object/);
    assert.match(why(() => parseHeader(Buffer.from([0x7b, 0xff, 0x7d]), limits)), /not UTF-8 JSON/);
  });

  it('overlapping, gapped, and wrongly sized offsets', () => {
    const two = (a: [number, number], b: [number, number]) =>
      header({ a: { dtype: 'F32', shape: [2], data_offsets: a }, b: { dtype: 'F32', shape: [2], data_offsets: b } }, 16);
    assert.match(why(() => parse(two([0, 8], [4, 12]))), /overlaps/);
    assert.match(why(() => parse(two([0, 8], [12, 20]))), /gap/);
    assert.match(why(() => parse(header({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8))), /12 bytes but its offsets span 8/);
    assert.match(why(() => parse(header({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }))), /data_offsets/);
    assert.match(why(() => parse(header({ a: { dtype: 'Q4', shape: [2], data_offsets: [0, 1] } }))), /unknown dtype/);
    assert.match(why(() => parse(header({ __metadata__: { a: 1 } }))), /__metadata__/);
  });

  it('a truncated file, and one longer than its header says', () => {
    const ok = safetensors({ a: { dtype: 'F32', shape: [4] } });
    assert.match(why(() => parse(ok, ok.length - 1)), /truncated/);
    assert.match(why(() => parse(ok, ok.length + 5)), /describes/);
    assert.equal(parse(ok).fileBytes, ok.length);
  });
});

describe('readFileHeader', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'klein-st-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads a file from disk', async () => {
    await writeFile(join(dir, 'ok.safetensors'), small);
    const h = await readFileHeader(join(dir, 'ok.safetensors'), limits);
    assert.equal(h.fileBytes, small.length);
    assert.equal(h.tensors.length, 2);
  });

  it('refuses N = 0, N > 100 MB, a header past the end of the file, and a body cut short', async () => {
    const cases: Array<[Buffer, RegExp]> = [
      [raw('', Buffer.alloc(0), 0n), /header length is 0/],
      [raw('{}', Buffer.alloc(0), BigInt(MAX_HEADER_BYTES + 1)), /at most 100000000/],
      [raw('{}', Buffer.alloc(0), 1000n), /ends inside its 1000-byte header/],
      [small.subarray(0, small.length - 3), /truncated/],
      [Buffer.from([1, 2, 3]), /shorter than 8 bytes/],
    ];
    for (const [i, [bytes, re]] of cases.entries()) {
      const p = join(dir, `bad${i}.safetensors`);
      await writeFile(p, bytes);
      const err = await refusal(readFileHeader(p, limits));
      assert.equal(err.code, 'invalid_lora');
      assert.match(err.message, re);
    }
  });

  it('refuses a missing file', async () => {
    assert.match((await refusal(readFileHeader(join(dir, 'none.safetensors'), limits))).message, /no such file/);
  });
});
