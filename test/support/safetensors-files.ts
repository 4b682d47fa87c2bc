/**
 * For the tests beside it: a minimal safetensors writer and a loopback file server that
 * counts what it sends. Not imported by the service.
 *
 * The writer follows the format (huggingface/safetensors docs "Format"): an unsigned
 * little-endian u64 N, N bytes of JSON, then each tensor's bytes in header order.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TensorSpec {
  dtype: 'F32' | 'F16' | 'BF16' | 'I32' | 'U8';
  shape: number[];
}

const BYTES: Record<TensorSpec['dtype'], number> = { F32: 4, F16: 2, BF16: 2, I32: 4, U8: 1 };

/** A valid safetensors file; tensor bytes are a seeded pattern so different files hash differently. */
export function safetensors(tensors: Record<string, TensorSpec>, metadata?: Record<string, string>, seed = 1): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let at = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const len = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + len] };
    at += len;
  }
  const data = Buffer.alloc(at);
  for (let i = 0; i < Math.min(at, 4096); i++) data[i] = (i * 31 + seed * 17) & 0xff;
  return raw(JSON.stringify(header), data);
}

/** Any header text and data, with N = the header's length unless `declaredN` says otherwise. */
export function raw(headerJson: string, data: Buffer = Buffer.alloc(0), declaredN?: bigint): Buffer {
  const json = Buffer.from(headerJson, 'utf8');
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(declaredN ?? BigInt(json.length));
  return Buffer.concat([n, json, data]);
}

/** A LoRA pair's two tensors: A r×in, B out×r. */
export function pair(module: string, a: 'lora_A' | 'lora_down', r: number, inF: number, outF: number, dtype: TensorSpec['dtype'] = 'BF16'): Record<string, TensorSpec> {
  const b = a === 'lora_A' ? 'lora_B' : 'lora_up';
  return { [`${module}.${a}.weight`]: { dtype, shape: [r, inF] }, [`${module}.${b}.weight`]: { dtype, shape: [outF, r] } };
}

export interface FileServer {
  /** `http://127.0.0.1:<port>` */
  base: string;
  /** Requests per path, and body bytes handed to the socket in all. */
  requests: Map<string, number>;
  ranges: string[];
  bytesSent(): number;
  close(): Promise<void>;
}

export interface FileServerOptions {
  files: Record<string, Buffer>;
  /** false: answer every GET with 200 and the whole body, as a server without Range support. */
  honourRange: boolean;
  /** path → Location, answered with 302. */
  redirects?: Record<string, string>;
  /** Send half of each body, then wait this long (ms) before the rest, so a test can abort mid-way. */
  delayMs?: number;
  /** Sees every request (its headers), before it is answered. */
  onRequest?: (req: IncomingMessage) => void;
}

/** Sends `body` in 64 KiB chunks, waiting for drain, and stops when the client hangs up. */
async function send(res: ServerResponse, body: Buffer, count: (n: number) => void, delayMs: number): Promise<void> {
  let closed = false;
  res.on('close', () => {
    closed = true;
  });
  const half = delayMs > 0 ? Math.floor(body.length / 2) : -1;
  for (let at = 0; at < body.length && !closed; ) {
    if (at === half) await new Promise((r) => setTimeout(r, delayMs));
    const chunk = body.subarray(at, Math.min(body.length, at + 65536, at < half ? half : Infinity));
    at += chunk.length;
    count(chunk.length);
    if (!res.write(chunk)) {
      await new Promise<void>((r) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          r();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  if (!closed) res.end();
}

export async function startFileServer(options: FileServerOptions): Promise<FileServer> {
  const requests = new Map<string, number>();
  const ranges: string[] = [];
  let sent = 0;
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.set(path, (requests.get(path) ?? 0) + 1);
    options.onRequest?.(req);
    const to = options.redirects?.[path];
    if (to) {
      res.writeHead(302, { location: to }).end();
      return;
    }
    const file = options.files[path];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (req.headers.range) ranges.push(req.headers.range);
    if (options.honourRange && range) {
      const start = Number(range[1]);
      if (start >= file.length) {
        res.writeHead(416, { 'content-range': `bytes */${file.length}` }).end();
        return;
      }
      const end = Math.min(Number(range[2]), file.length - 1);
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${file.length}`, 'content-length': end - start + 1 });
      void send(res, file.subarray(start, end + 1), (n) => (sent += n), options.delayMs ?? 0);
      return;
    }
    res.writeHead(200, { 'content-length': file.length });
    void send(res, file, (n) => (sent += n), options.delayMs ?? 0);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    requests,
    ranges,
    bytesSent: () => sent,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
