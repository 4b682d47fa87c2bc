/**
 * Worker ↔ engine frames, protocol version 1 (protocol/PROTOCOL.md):
 *
 *     u32 BE header length | u32 BE payload length | compact UTF-8 JSON header | payload
 *
 * This file is the edge: bytes and JSON come in, typed messages go out. Untyped JSON never
 * leaves it — `EngineMessageDecoder` hands the supervisor discriminated unions only. The raw
 * `FrameDecoder` is exported for the fixture tests, which compare headers as written.
 * Every header's fields are defined once, in protocol-messages.ts: the headers sent here are
 * built as its types, and the engine's are read by its field names.
 */
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import {
  type CancelHeader,
  ENGINE_ERROR_CODES,
  type EngineErrorCode,
  type ErrorHeader,
  type GenerateHeader,
  PROTOCOL_VERSION,
  type ProgressHeader,
  type ReadyHeader,
  type ResultHeader,
  type ShutdownHeader,
} from './protocol-messages.js';

export { ENGINE_ERROR_CODES, type EngineErrorCode, PROTOCOL_VERSION };
/** PROTOCOL.md § Frame: 2 ≤ header length ≤ 1 MiB, payload length ≤ 512 MiB. */
export const MAX_HEADER_BYTES = 1 << 20;
export const MAX_PAYLOAD_BYTES = 512 << 20;
const PREFIX_BYTES = 8;

/** The byte stream is broken (PROTOCOL.md: the worker kills and restarts the engine). */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

// ------------------------------------------------------------------ raw frames

type JsonObject = { readonly [key: string]: unknown };

/** One frame as written: a v1 JSON object header with a string `type`, and its payload. */
export interface RawFrame {
  header: JsonObject;
  payload: Buffer;
}

/** Encodes one frame. `v: 1` is added when the header lacks it. */
export function encodeFrame(header: Record<string, unknown>, payload: Buffer = Buffer.alloc(0)): Buffer {
  const raw = Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, ...header }), 'utf8');
  if (raw.length > MAX_HEADER_BYTES) throw new ProtocolError(`header of ${raw.length} bytes is over 1 MiB`);
  if (payload.length > MAX_PAYLOAD_BYTES) throw new ProtocolError(`payload of ${payload.length} bytes is over 512 MiB`);
  const prefix = Buffer.alloc(PREFIX_BYTES);
  prefix.writeUInt32BE(raw.length, 0);
  prefix.writeUInt32BE(payload.length, 4);
  return Buffer.concat([prefix, raw, payload]);
}

/**
 * Incremental decoder for a byte stream: feed chunks as they arrive, get whole frames back.
 * Frames may be split across chunks and a chunk may hold several frames. After a
 * `ProtocolError` the stream is broken and the decoder refuses further input.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private broken: ProtocolError | null = null;

  push(chunk: Buffer): RawFrame[] {
    if (this.broken) throw this.broken;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: RawFrame[] = [];
    try {
      for (;;) {
        const frame = this.next();
        if (!frame) break;
        frames.push(frame);
      }
    } catch (err) {
      if (err instanceof ProtocolError) this.broken = err;
      throw err;
    }
    return frames;
  }

  /** Bytes received that do not yet form a whole frame (non-zero at end of stream = truncated). */
  get pendingBytes(): number {
    return this.buffered;
  }

  private next(): RawFrame | null {
    if (this.buffered < PREFIX_BYTES) return null;
    const prefix = this.peek(PREFIX_BYTES);
    const headerLength = prefix.readUInt32BE(0);
    const payloadLength = prefix.readUInt32BE(4);
    // Checked before waiting for the body, so a corrupt length cannot make us buffer 4 GiB.
    if (headerLength < 2 || headerLength > MAX_HEADER_BYTES) throw new ProtocolError(`bad header length ${headerLength}`);
    if (payloadLength > MAX_PAYLOAD_BYTES) throw new ProtocolError(`bad payload length ${payloadLength}`);
    const total = PREFIX_BYTES + headerLength + payloadLength;
    if (this.buffered < total) return null;
    const whole = this.take(total);
    const header = decodeHeader(whole.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength));
    // A copy, so a kept payload does not pin the rest of a large chunk.
    const payload = Buffer.from(whole.subarray(PREFIX_BYTES + headerLength));
    return { header, payload };
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) return first.subarray(0, n);
    this.chunks = [Buffer.concat(this.chunks)];
    return (this.chunks[0] as Buffer).subarray(0, n);
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    const out = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

function decodeHeader(raw: Buffer): JsonObject {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch (err) {
    throw new ProtocolError(`header is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ProtocolError('header is not a JSON object');
  }
  const h = header as JsonObject;
  if (h.v !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported protocol version ${JSON.stringify(h.v)}`);
  if (typeof h.type !== 'string') throw new ProtocolError('header has no type');
  return h;
}

// --------------------------------------------------------- engine → worker

/** What the engine says about itself in `ready` (PROTOCOL.md; wire names kept for /health). */
export interface EngineFacts {
  protocol: number;
  engine_version: string;
  model: string;
  /** `distilled` | `base` for the real model; other engines (the simulated one) name their own. */
  variant: string;
  device: string;
  dtype: string;
  capabilities: {
    samplers: string[];
    max_reference_images: number;
    /** Whether the fast path really changes something on this device. */
    go_fast: boolean;
    preview: boolean;
    /** How many compatible jobs the engine runs as one batch (1 when absent: older engines). */
    max_batch: number;
    /** LoRA adapters (contract §7): how many a job may carry, the formats converted, the linear dims a file must fit; absent: none taken. */
    loras?: { max: number; formats: string[]; dims?: { inputs: number[]; outputs: number[] } };
  };
  geometry: { pixel_multiple: number; min_side: number; max_side: number };
  /** What the fast path uses on this device (fp8 kernel, attention, compile…), shown as given in /health. */
  fast: Record<string, unknown> | null;
}

export interface EngineTimings {
  text_ms: number;
  denoise_ms: number;
  decode_ms: number;
  total_ms: number;
}

export interface ReadyMessage {
  type: 'ready';
  facts: EngineFacts;
}

export interface ProgressMessage {
  type: 'progress';
  id: string;
  /** 1-based sampler step. */
  step: number;
  total: number;
  preview?: RgbImage;
}

export interface ResultMessage {
  type: 'result';
  id: string;
  image: RgbImage;
  seed: number;
  timings: EngineTimings;
}

export interface ErrorMessage {
  type: 'error';
  /** null when the error is not tied to a job (a load failure before `ready`). */
  id: string | null;
  code: EngineErrorCode;
  message: string;
}

export type EngineMessage = ReadyMessage | ProgressMessage | ResultMessage | ErrorMessage;

/**
 * Types one engine frame. Unknown `type`s give null (PROTOCOL.md: ignored, for later
 * versions). A known type with wrong fields is a broken stream: the engine has a bug and
 * nothing it says next can be trusted.
 */
export function parseEngineMessage(frame: RawFrame): EngineMessage | null {
  switch (frame.header.type) {
    case 'ready':
      noPayload(frame);
      return { type: 'ready', facts: parseFacts(fields<ReadyHeader>(frame)) };
    case 'progress': {
      const h = fields<ProgressHeader>(frame);
      const msg: ProgressMessage = { type: 'progress', id: h.str('id'), step: h.int('step'), total: h.int('total') };
      if (h.has('preview')) {
        const size = h.obj('preview');
        msg.preview = pixels(frame, size.int('width'), size.int('height'), 'progress preview');
      } else {
        noPayload(frame);
      }
      return msg;
    }
    case 'result': {
      const h = fields<ResultHeader>(frame);
      const t = h.obj('timings');
      return {
        type: 'result',
        id: h.str('id'),
        image: pixels(frame, h.int('width'), h.int('height'), 'result'),
        seed: h.int('seed'),
        timings: { text_ms: t.num('text_ms'), denoise_ms: t.num('denoise_ms'), decode_ms: t.num('decode_ms'), total_ms: t.num('total_ms') },
      };
    }
    case 'error': {
      noPayload(frame);
      const h = fields<ErrorHeader>(frame);
      const id = h.has('id') && h.raw('id') === null ? null : h.str('id');
      const code = h.str('code');
      const message = h.str('message');
      if ((ENGINE_ERROR_CODES as readonly string[]).includes(code)) {
        return { type: 'error', id, code: code as EngineErrorCode, message };
      }
      // A code from a later version: a job failure all the same, kept visible in the message.
      return { type: 'error', id, code: 'internal', message: `[${code}] ${message}` };
    }
    default:
      return null;
  }
}

function parseFacts(h: Fields<ReadyHeader>): EngineFacts {
  const caps = h.obj('capabilities');
  const geo = h.obj('geometry');
  return {
    protocol: h.int('protocol'),
    engine_version: h.str('engine_version'),
    model: h.str('model'),
    variant: h.str('variant'),
    device: h.str('device'),
    dtype: h.str('dtype'),
    capabilities: {
      samplers: caps.strList('samplers'),
      max_reference_images: caps.int('max_reference_images'),
      go_fast: caps.bool('go_fast'),
      preview: caps.bool('preview'),
      max_batch: caps.has('max_batch') ? caps.int('max_batch') : 1,
      ...(caps.has('loras') ? { loras: parseLoraCapabilities(caps.obj('loras')) } : {}),
    },
    geometry: { pixel_multiple: geo.int('pixel_multiple'), min_side: geo.int('min_side'), max_side: geo.int('max_side') },
    fast: h.has('fast') && isRecord(h.raw('fast')) ? (h.raw('fast') as Record<string, unknown>) : null,
  };
}

function parseLoraCapabilities(l: Fields<NonNullable<ReadyHeader['capabilities']['loras']>>): NonNullable<EngineFacts['capabilities']['loras']> {
  const ints = (v: unknown, what: string): number[] => {
    if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x) && (x as number) > 0)) throw new ProtocolError(`ready: capabilities.loras.dims.${what} must be a list of positive integers`);
    return v as number[];
  };
  const dims = l.has('dims') ? l.obj('dims') : null;
  return {
    max: l.int('max'),
    formats: l.strList('formats'),
    ...(dims ? { dims: { inputs: ints(dims.raw('inputs'), 'inputs'), outputs: ints(dims.raw('outputs'), 'outputs') } } : {}),
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function noPayload(frame: RawFrame): void {
  if (frame.payload.length !== 0) {
    throw new ProtocolError(`${String(frame.header.type)}: unexpected payload of ${frame.payload.length} bytes`);
  }
}

function pixels(frame: RawFrame, width: number, height: number, what: string): RgbImage {
  if (width < 1 || height < 1) throw new ProtocolError(`${what}: size ${width}x${height} is not positive`);
  const expected = width * height * 3;
  if (frame.payload.length !== expected) {
    throw new ProtocolError(`${what}: payload of ${frame.payload.length} bytes, ${width}x${height} RGB needs ${expected}`);
  }
  return { width, height, data: frame.payload };
}

function fields<T extends object>(frame: RawFrame): Fields<T> {
  return new Fields<T>(frame.header, String(frame.header.type));
}

/**
 * Field access on a JSON object that throws ProtocolError naming the field. `T` is the
 * object's schema type (protocol-messages.ts): only its field names can be read.
 */
class Fields<T extends object> {
  constructor(
    private readonly object: JsonObject,
    private readonly where: string,
  ) {}

  has(name: keyof T & string): boolean {
    return Object.prototype.hasOwnProperty.call(this.object, name);
  }

  raw(name: keyof T & string): unknown {
    return this.has(name) ? this.object[name] : undefined;
  }

  private bad(name: keyof T & string, want: string): ProtocolError {
    return new ProtocolError(`${this.where}.${name}: expected ${want}, got ${JSON.stringify(this.raw(name)) ?? 'nothing'}`);
  }

  str(name: keyof T & string): string {
    const v = this.raw(name);
    if (typeof v !== 'string') throw this.bad(name, 'a string');
    return v;
  }

  num(name: keyof T & string): number {
    const v = this.raw(name);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.bad(name, 'a number');
    return v;
  }

  /** PROTOCOL.md: `5` and `5.0` are the same value, so only the value is checked. */
  int(name: keyof T & string): number {
    const v = this.num(name);
    if (!Number.isSafeInteger(v) || v < 0) throw this.bad(name, 'a non-negative integer');
    return v;
  }

  bool(name: keyof T & string): boolean {
    const v = this.raw(name);
    if (typeof v !== 'boolean') throw this.bad(name, 'a boolean');
    return v;
  }

  strList(name: keyof T & string): string[] {
    const v = this.raw(name);
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw this.bad(name, 'a list of strings');
    return v as string[];
  }

  obj<K extends keyof T & string>(name: K): Fields<NonNullable<T[K]> & object> {
    const v = this.raw(name);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw this.bad(name, 'an object');
    return new Fields<NonNullable<T[K]> & object>(v as JsonObject, `${this.where}.${name}`);
  }
}

/** Frames in, typed engine messages out; unknown message types are dropped. */
export class EngineMessageDecoder {
  private readonly frames = new FrameDecoder();

  push(chunk: Buffer): EngineMessage[] {
    const out: EngineMessage[] = [];
    for (const frame of this.frames.push(chunk)) {
      const msg = parseEngineMessage(frame);
      if (msg) out.push(msg);
    }
    return out;
  }

  get pendingBytes(): number {
    return this.frames.pendingBytes;
  }
}

// --------------------------------------------------------- worker → engine

/** The resolved parameters the engine needs; ResolvedParams carries these and more. */
export type EngineParams = Pick<
  ResolvedParams,
  'prompt' | 'negative_prompt' | 'seed' | 'cfg' | 'sampler' | 'steps' | 'width' | 'height' | 'go_fast'
>;

export interface GenerateRequest {
  id: string;
  params: EngineParams;
  /** Reference images, already resized by the worker (0 to 4). */
  images: RgbImage[];
  /** Ask for preview frames with progress. */
  preview: boolean;
  /** LoRA adapters to apply, each a file the worker downloaded (its sha256 and local path) and a scale; absent or empty: none. */
  loras?: ReadonlyArray<{ key: string; path: string; scale: number }>;
  /**
   * The job is one of a batch: the `size` frames naming this batch id are written back to
   * back and the engine runs them together (PROTOCOL.md, Batching). Absent: a job alone.
   */
  batch?: { id: string; size: number };
}

/**
 * `generate`: the fields the engine reads, in PROTOCOL.md order, and the reference images'
 * RGB concatenated as the payload. Only the engine's fields are copied, so records such as
 * `image_urls` never reach the engine.
 */
export function encodeGenerate(req: GenerateRequest): Buffer {
  const p = req.params;
  if (!Number.isSafeInteger(p.seed) || p.seed < 0) throw new RangeError(`seed ${p.seed} is not an integer from 0 to 2^53-1`);
  for (const [i, img] of req.images.entries()) {
    if (img.data.length !== img.width * img.height * 3) {
      throw new RangeError(`images[${i}]: ${img.data.length} bytes for ${img.width}x${img.height} RGB`);
    }
  }
  const header: GenerateHeader = {
    v: PROTOCOL_VERSION,
    type: 'generate',
    id: req.id,
    params: {
      prompt: p.prompt,
      negative_prompt: p.negative_prompt,
      seed: p.seed,
      cfg: p.cfg,
      sampler: p.sampler,
      steps: p.steps,
      width: p.width,
      height: p.height,
      go_fast: p.go_fast,
      preview: req.preview,
    },
    images: req.images.map((img) => ({ width: img.width, height: img.height })),
    ...(req.loras && req.loras.length > 0 ? { loras: req.loras.map((l) => ({ key: l.key, path: l.path, scale: l.scale })) } : {}),
    ...(req.batch ? { batch: { id: req.batch.id, size: req.batch.size } } : {}),
  };
  return encodeFrame(header, Buffer.concat(req.images.map((img) => img.data)));
}

export function encodeCancel(id: string): Buffer {
  const header: CancelHeader = { v: PROTOCOL_VERSION, type: 'cancel', id };
  return encodeFrame(header);
}

export function encodeShutdown(): Buffer {
  const header: ShutdownHeader = { v: PROTOCOL_VERSION, type: 'shutdown' };
  return encodeFrame(header);
}
