/**
 * Clients no library would write, for the hostile suites: raw sockets that send what they
 * like when they like (bodies cut short or dripped, headers that never end), and a
 * reference-image server that counts what it is asked and answers only when told.
 */
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

export interface RawAnswer {
  /** Status of the first answer on the socket, or null when it closed without one. */
  status: number | null;
  headers: Record<string, string>;
  body: string;
  /** The socket was closed by the server (not only answered). */
  closed: boolean;
  /** Milliseconds from the first byte sent to the answer's end or the close. */
  ms: number;
}

/** Opens a socket to `url`'s host and port. */
export function rawSocket(url: string): Promise<Socket> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port) }, () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Writes `head` (and `then`, given the socket, to drip or stop), and reads the first answer
 * until the server closes the socket or `waitMs` passes.
 */
export async function rawExchange(url: string, head: string, o: { then?: (s: Socket) => void; waitMs?: number } = {}): Promise<RawAnswer> {
  const s = await rawSocket(url);
  const t0 = Date.now();
  let data = '';
  let closed = false;
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, o.waitMs ?? 5000);
    s.on('data', (d: Buffer) => (data += d.toString('latin1')));
    s.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve();
    });
    s.on('error', () => undefined);
  });
  s.write(head);
  o.then?.(s);
  await done;
  const ms = Date.now() - t0;
  s.destroy();
  return { ...parseAnswer(data), closed, ms };
}

function parseAnswer(raw: string): Pick<RawAnswer, 'status' | 'headers' | 'body'> {
  const m = /^HTTP\/1\.1 (\d{3})[^\r\n]*\r\n/.exec(raw);
  if (!m) return { status: null, headers: {}, body: '' };
  const end = raw.indexOf('\r\n\r\n');
  const headers: Record<string, string> = {};
  for (const line of raw.slice(m[0].length, end).split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = raw.slice(end + 4);
  const len = Number(headers['content-length']);
  if (Number.isFinite(len)) body = body.slice(0, len);
  return { status: Number(m[1]), headers, body };
}

/** Drips `n` bytes, one every `everyMs`, while the socket is open. */
export function drip(s: Socket, n: number, everyMs: number, byte = 'x'): void {
  let sent = 0;
  const t = setInterval(() => {
    if (s.destroyed || sent >= n) return clearInterval(t);
    s.write(byte);
    sent += 1;
  }, everyMs);
  s.once('close', () => clearInterval(t));
}

export interface ImageServer {
  /** A URL of this server (the path names the image). */
  url(name: string): string;
  /** Requests received, by path. */
  hits: string[];
  /** Answers every held request (and all later ones) at once. */
  release(): void;
  close(): Promise<void>;
}

/** Serves one small PNG under any path; with `hold`, answers only after release(). */
export async function imageServer(o: { hold?: boolean } = {}): Promise<ImageServer> {
  const png = await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 10, g: 120, b: 200 } } }).png().toBuffer();
  const hits: string[] = [];
  let held = o.hold ?? false;
  const waiting: Array<() => void> = [];
  const server: Server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const answer = () => res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length }).end(png);
    if (held) waiting.push(answer);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}.png`,
    hits,
    release() {
      held = false;
      for (const w of waiting.splice(0)) w();
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
