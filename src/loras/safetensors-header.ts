/**
 * A safetensors file's header, read without its body. The format
 * (huggingface/safetensors, docs/source/index.mdx "Format"): 8 bytes, an unsigned
 * little-endian 64-bit N; N bytes of UTF-8 JSON mapping each tensor name to
 * `{dtype, shape, data_offsets: [begin, end]}` (offsets into the byte buffer that follows the
 * header) plus an optional `__metadata__` string→string map; then the byte buffer. The checks
 * are the library's own (safetensors/src/tensor.rs `Metadata::validate` and `read_metadata`):
 * N at most 100,000,000 (MAX_HEADER_SIZE), offsets contiguous from 0 with no gap or overlap,
 * each tensor's byte length = product(shape) × dtype size, and the file exactly 8 + N + the
 * last offset long (a longer or shorter file is refused as MetadataIncompleteBuffer).
 *
 * Over HTTP: `Range: bytes=0-7`, then `bytes=8-(7+N)`. A server that ignores Range (200) is
 * read only up to 8 + N bytes and then cut off, so a multi-gigabyte body is never taken.
 */
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Deadline, openGuarded, statusError, type LoraFetchOptions } from './fetch.js';
import { loraError } from './source.js';

/** safetensors' MAX_HEADER_SIZE. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Bytes per element of every dtype the format names (safetensors `Dtype::bitsize` / 8). */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8, C64: 8,
};

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Offsets into the byte buffer after the header. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** N: the JSON's length. */
  headerBytes: number;
  /** 8 + N + the last tensor's end: the whole file. */
  fileBytes: number;
  /** In file order (by offset). */
  tensors: TensorInfo[];
  metadata: Record<string, string>;
}

export interface HeaderLimits {
  field: string;
  /** The largest file accepted (KLEIN_LORA_MAX_BYTES). */
  maxBytes: number;
}

/** N from the first 8 bytes; refuses 0, > MAX_HEADER_BYTES, and a header alone beyond the cap. */
export function headerLength(first8: Buffer, limits: HeaderLimits): number {
  if (first8.length < 8) throw loraError(limits.field, 'is shorter than 8 bytes: not a safetensors file');
  const n = first8.readBigUInt64LE(0);
  if (n === 0n) throw loraError(limits.field, 'is not a safetensors file (its header length is 0)');
  if (n > BigInt(MAX_HEADER_BYTES)) throw loraError(limits.field, `is not a safetensors file (its header would be ${n} bytes; at most ${MAX_HEADER_BYTES})`);
  const len = Number(n);
  if (8 + len > limits.maxBytes) throw tooLarge(limits, 8 + len);
  return len;
}

function tooLarge(limits: HeaderLimits, bytes: number): Error {
  return loraError(limits.field, `is ${bytes} bytes; this server takes LoRA files up to ${limits.maxBytes} bytes`);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Parses and checks the JSON header. `actualBytes`, when known (a file's size, a
 * Content-Range total), must equal the size the header describes.
 */
export function parseHeader(json: Buffer, limits: HeaderLimits, actualBytes?: number | undefined): SafetensorsHeader {
  const bad = (why: string) => loraError(limits.field, `is not a valid safetensors file (${why})`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch {
    throw bad('its header is not UTF-8 JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad('its header is not a JSON object');

  const tensors: TensorInfo[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
        throw bad('__metadata__ is not a map of strings');
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const t = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (typeof t !== 'object' || t === null) throw bad(`${name} is not a tensor entry`);
    const { dtype, shape, data_offsets: offsets } = t;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw bad(`${name} has an unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) throw bad(`${name} has no valid shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || (offsets[0] as number) > (offsets[1] as number)) {
      throw bad(`${name} has no valid data_offsets`);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const [begin, end] = offsets as [number, number];
    if (end - begin !== elements * DTYPE_BYTES[dtype]!) {
      throw bad(`${name}: ${dtype}${JSON.stringify(shape)} is ${elements * DTYPE_BYTES[dtype]!} bytes but its offsets span ${end - begin}`);
    }
    tensors.push({ name, dtype, shape: shape as number[], begin, end });
  }

  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const t of tensors) {
    if (t.begin !== at) {
      throw bad(t.begin < at ? `${t.name} overlaps the tensor before it (offset ${t.begin} < ${at})` : `a gap before ${t.name} (offset ${t.begin}, expected ${at})`);
    }
    at = t.end;
  }
  const fileBytes = 8 + json.length + at;
  if (fileBytes > limits.maxBytes) throw tooLarge(limits, fileBytes);
  if (actualBytes !== undefined && actualBytes !== fileBytes) {
    throw bad(
      actualBytes < fileBytes
        ? `truncated: its header describes ${fileBytes} bytes, the file has ${actualBytes}`
        : `its header describes ${fileBytes} bytes, the file has ${actualBytes}`,
    );
  }
  return { headerBytes: json.length, fileBytes, tensors, metadata };
}

/** The header of a file on disk (KLEIN_LORA_DIR, or a finished download), checked against its size. */
export async function readFileHeader(path: string, limits: HeaderLimits): Promise<SafetensorsHeader> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw loraError(limits.field, code === 'ENOENT' ? 'no such file in KLEIN_LORA_DIR' : `cannot be opened (${code ?? 'error'})`);
  }
  try {
    const stat = await fh.stat();
    if (!stat.isFile()) throw loraError(limits.field, 'is not a regular file');
    const first = Buffer.alloc(8);
    const { bytesRead } = await fh.read(first, 0, 8, 0);
    const n = headerLength(first.subarray(0, bytesRead), limits);
    if (8 + n > stat.size) throw loraError(limits.field, `is not a valid safetensors file (truncated: the file ends inside its ${n}-byte header)`);
    const json = Buffer.alloc(n);
    await fh.read(json, 0, n, 8);
    return parseHeader(json, limits, stat.size);
  } finally {
    await fh.close();
  }
}

/** Pulls bytes from a body until `n` are held (fewer if it ends first); never reads further. */
class Prefix {
  private readonly it: AsyncIterator<Buffer>;
  private held = Buffer.alloc(0);
  /** Bytes this reader has taken off the wire. */
  received = 0;
  constructor(body: Readable) {
    this.it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  async upTo(n: number): Promise<Buffer> {
    const parts: Buffer[] = [this.held];
    let have = this.held.length;
    while (have < n) {
      const r = await this.it.next();
      if (r.done) break;
      parts.push(r.value);
      have += r.value.length;
      this.received += r.value.length;
    }
    this.held = Buffer.concat(parts);
    return this.held.subarray(0, Math.min(n, this.held.length));
  }
}

/** `bytes 0-7/1234` → its parts; the total is undefined for `*`. */
export function parseContentRange(value: string | string[] | undefined): { start: number; end: number; total: number | undefined } | null {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(typeof value === 'string' ? value.trim() : '');
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

export interface RemoteHeaderOptions extends LoraFetchOptions {
  maxBytes: number;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

export interface RemoteHeader extends SafetensorsHeader {
  /** The URL that answered, after redirects. */
  url: string;
  /** Body bytes taken off the wire: 8 + N with Range, a little more from a server that ignores it. */
  received: number;
}

/** The header of a remote file, through the SSRF guard; see the top of the file. */
export async function readRemoteHeader(url: string, options: RemoteHeaderOptions): Promise<RemoteHeader> {
  const deadline = new Deadline(options.timeoutMs, options.signal);
  const limits: HeaderLimits = { field: options.field, maxBytes: options.maxBytes };
  const read = async (prefix: Prefix, n: number): Promise<Buffer> => {
    try {
      return await prefix.upTo(n);
    } catch (err) {
      throw deadline.failure(options.field, 'the header download', err);
    }
  };
  const contentLength = (v: string | string[] | undefined) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : undefined);

  const first = await openGuarded(url, { ...options, range: [0, 7] }, deadline);
  try {
    if (first.status === 416) throw loraError(options.field, 'is shorter than 8 bytes: not a safetensors file');
    const prefix = new Prefix(first.body);
    if (first.status === 200) {
      // Range ignored: the whole file is coming; take 8 + N bytes of it and hang up.
      const total = contentLength(first.headers['content-length']);
      const n = headerLength(await read(prefix, 8), limits);
      const head = await read(prefix, 8 + n);
      if (head.length < 8 + n) throw loraError(options.field, 'is not a valid safetensors file (truncated inside its header)');
      return { ...parseHeader(head.subarray(8), limits, total), url: first.url, received: prefix.received };
    }
    if (first.status !== 206) throw statusError(first, options.field);
    const range = parseContentRange(first.headers['content-range']);
    if (!range || range.start !== 0) throw loraError(options.field, `${new URL(first.url).origin} answered a range that was not asked for`);
    const n = headerLength(await read(prefix, 8), limits);
    await first.close();

    // The second range goes to where the first was answered (the CDN, after a hub redirect).
    const sameOrigin = new URL(first.url).origin === new URL(url).origin;
    const second = await openGuarded(first.url, { ...options, headers: sameOrigin ? options.headers : undefined, range: [8, 7 + n] }, deadline);
    try {
      const rest = new Prefix(second.body);
      let json: Buffer;
      if (second.status === 206) {
        const r2 = parseContentRange(second.headers['content-range']);
        if (!r2 || r2.start !== 8) throw loraError(options.field, `${new URL(second.url).origin} answered a range that was not asked for`);
        json = await read(rest, n);
      } else if (second.status === 200) {
        json = (await read(rest, 8 + n)).subarray(8);
      } else {
        throw statusError(second, options.field);
      }
      if (json.length < n) throw loraError(options.field, 'is not a valid safetensors file (truncated inside its header)');
      return { ...parseHeader(json, limits, range.total), url: second.url, received: prefix.received + rest.received };
    } finally {
      await second.close();
    }
  } finally {
    await first.close();
  }
}
