/**
 * Protocol v1 from the worker's side: the shared fixtures (written by the engine's
 * `python -m klein_engine.protocol write-fixtures`), split and merged chunks, and the
 * malformed frames PROTOCOL.md says break the stream.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  EngineMessageDecoder,
  FrameDecoder,
  ProtocolError,
  encodeCancel,
  encodeFrame,
  encodeGenerate,
  encodeShutdown,
  parseEngineMessage,
  type EngineParams,
  type RawFrame,
} from './protocol.js';

const FIXTURES = new URL('../../protocol/fixtures/', import.meta.url).pathname;

interface Fixture {
  name: string;
  bin: Buffer;
  header: Record<string, unknown>;
  payload: Buffer;
}

function loadFixtures(): Fixture[] {
  const names = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
  return names.map((name) => {
    const desc = JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')) as { header: Record<string, unknown>; payload_hex: string };
    return { name, bin: readFileSync(join(FIXTURES, `${name}.bin`)), header: desc.header, payload: Buffer.from(desc.payload_hex, 'hex') };
  });
}

function decodeOne(bytes: Buffer): RawFrame {
  const d = new FrameDecoder();
  const frames = d.push(bytes);
  assert.equal(frames.length, 1);
  assert.equal(d.pendingBytes, 0);
  return frames[0] as RawFrame;
}

/** A frame with chosen lengths and header bytes, for malformed input. */
function rawFrame(header: string | Buffer, payload = Buffer.alloc(0), lengths?: { header?: number; payload?: number }): Buffer {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(lengths?.header ?? h.length, 0);
  prefix.writeUInt32BE(lengths?.payload ?? payload.length, 4);
  return Buffer.concat([prefix, h, payload]);
}

describe('protocol fixtures (protocol/fixtures, shared with the engine tests)', () => {
  const fixtures = loadFixtures();

  it('has the fixtures of every message type', () => {
    const types = new Set(fixtures.map((f) => f.header.type));
    for (const t of ['ready', 'progress', 'result', 'error', 'generate', 'cancel', 'shutdown']) assert.ok(types.has(t), t);
  });

  for (const f of fixtures) {
    it(`${f.name}: .bin decodes to its .json and the .json round-trips`, () => {
      const frame = decodeOne(f.bin);
      assert.deepEqual(frame.header, f.header);
      assert.deepEqual(frame.payload, f.payload);
      const again = decodeOne(encodeFrame(f.header, f.payload));
      assert.deepEqual(again.header, f.header);
      assert.deepEqual(again.payload, f.payload);
    });
  }

  it('types every engine → worker fixture', () => {
    const byName = new Map(fixtures.map((f) => [f.name, decodeOne(f.bin)]));
    const get = (n: string) => {
      const fr = byName.get(n);
      assert.ok(fr, `fixture ${n}`);
      return parseEngineMessage(fr);
    };
    const ready = get('ready');
    assert.equal(ready?.type, 'ready');
    if (ready?.type === 'ready') {
      assert.equal(ready.facts.protocol, 1);
      assert.equal(ready.facts.model, 'tiny');
      assert.deepEqual(ready.facts.capabilities.samplers, ['euler', 'res_2s']);
      assert.equal(ready.facts.geometry.pixel_multiple, 16);
      assert.equal(ready.facts.capabilities.max_batch, 1);
      assert.equal(ready.facts.fast?.reference_path, true);
    }
    assert.deepEqual(get('progress'), { type: 'progress', id: 'req-1', step: 3, total: 20 });
    const pp = get('progress_preview');
    assert.equal(pp?.type, 'progress');
    if (pp?.type === 'progress') {
      assert.equal(pp.preview?.width, 2);
      assert.equal(pp.preview?.data.toString('hex'), 'ff000000ff000000ffffffff');
    }
    const result = get('result');
    assert.equal(result?.type, 'result');
    if (result?.type === 'result') {
      assert.deepEqual({ w: result.image.width, h: result.image.height, n: result.image.data.length }, { w: 2, h: 2, n: 12 });
      assert.equal(result.seed, 3425234);
      assert.deepEqual(result.timings, { text_ms: 1.5, denoise_ms: 120.25, decode_ms: 30, total_ms: 151.75 });
    }
    assert.deepEqual(get('error_null_id'), {
      type: 'error',
      id: null,
      code: 'internal',
      message: 'model directory /x does not exist: set KLEIN_MODEL',
    });
    for (const code of ['invalid_input', 'out_of_memory', 'cancelled', 'internal']) {
      const e = get(`error_${code}`);
      assert.equal(e?.type, 'error');
      if (e?.type === 'error') {
        assert.equal(e.code, code);
        assert.equal(e.id, 'req-1');
      }
    }
  });

  it('encodes generate, cancel and shutdown exactly as the fixtures describe', () => {
    const byName = new Map(fixtures.map((f) => [f.name, f]));
    for (const name of ['generate', 'generate_two_images', 'generate_unicode']) {
      const f = byName.get(name);
      assert.ok(f, name);
      const p = f.header.params as EngineParams & { preview: boolean };
      const metas = f.header.images as { width: number; height: number }[];
      let offset = 0;
      const images = metas.map((m) => {
        const n = m.width * m.height * 3;
        const img = { width: m.width, height: m.height, data: f.payload.subarray(offset, offset + n) };
        offset += n;
        return img;
      });
      const { preview, ...params } = p;
      const frame = decodeOne(encodeGenerate({ id: String(f.header.id), params, images, preview }));
      assert.deepEqual(frame.header, f.header, name);
      assert.deepEqual(frame.payload, f.payload, name);
    }
    assert.deepEqual(decodeOne(encodeCancel('req-1')).header, byName.get('cancel')?.header);
    assert.deepEqual(decodeOne(encodeShutdown()).header, byName.get('shutdown')?.header);
  });

  it('encodes generate from ResolvedParams without the gateway-only fields', () => {
    const frame = decodeOne(
      encodeGenerate({
        id: 'x',
        params: {
          prompt: 'p', negative_prompt: '', seed: 1, cfg: 1, sampler: 'euler', steps: 4, width: 64, height: 64, go_fast: false,
          ...{ aspect_ratio: '1:1', image_format: 'png', quality: 90, image_urls: ['https://example.com/a.png'], base64: false },
        },
        images: [],
        preview: true,
      }),
    );
    assert.deepEqual(Object.keys(frame.header.params as object), [
      'prompt', 'negative_prompt', 'seed', 'cfg', 'sampler', 'steps', 'width', 'height', 'go_fast', 'preview',
    ]);
  });

  it('refuses reference images whose bytes do not match their size', () => {
    const params: EngineParams = { prompt: 'p', negative_prompt: '', seed: 1, cfg: 1, sampler: 'euler', steps: 4, width: 64, height: 64, go_fast: false };
    assert.throws(() => encodeGenerate({ id: 'x', params, images: [{ width: 2, height: 2, data: Buffer.alloc(11) }], preview: false }), RangeError);
    assert.throws(() => encodeGenerate({ id: 'x', params: { ...params, seed: -1 }, images: [], preview: false }), RangeError);
  });
});

describe('FrameDecoder on a byte stream', () => {
  const a = encodeFrame({ type: 'progress', id: 'j', step: 1, total: 2 });
  const b = encodeFrame({ type: 'result', id: 'j', width: 1, height: 2, seed: 5, timings: { text_ms: 1, denoise_ms: 2, decode_ms: 3, total_ms: 6 } }, Buffer.from([1, 2, 3, 4, 5, 6]));
  const c = encodeFrame({ type: 'error', id: null, code: 'internal', message: 'é' });
  const stream = Buffer.concat([a, b, c]);

  it('decodes several frames from one chunk', () => {
    const frames = new FrameDecoder().push(stream);
    assert.deepEqual(frames.map((f) => f.header.type), ['progress', 'result', 'error']);
    assert.deepEqual([...(frames[1] as RawFrame).payload], [1, 2, 3, 4, 5, 6]);
  });

  it('decodes the same frames at every split point and byte by byte', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder();
      const frames = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      assert.equal(frames.length, 3, `cut at ${cut}`);
      assert.equal((frames[2] as RawFrame).header.message, 'é');
    }
    const d = new FrameDecoder();
    const frames: RawFrame[] = [];
    for (const byte of stream) frames.push(...d.push(Buffer.from([byte])));
    assert.deepEqual(frames.map((f) => f.header.type), ['progress', 'result', 'error']);
    assert.equal(d.pendingBytes, 0);
  });

  it('keeps an incomplete frame pending', () => {
    const d = new FrameDecoder();
    assert.deepEqual(d.push(b.subarray(0, b.length - 1)), []);
    assert.equal(d.pendingBytes, b.length - 1);
  });

  it('types messages across chunks and drops unknown types', () => {
    const unknown = encodeFrame({ type: 'telemetry', id: 'j', gpu_temp: 60 });
    const d = new EngineMessageDecoder();
    const joined = Buffer.concat([unknown, a, b]);
    const msgs = [...d.push(joined.subarray(0, 13)), ...d.push(joined.subarray(13))];
    assert.deepEqual(msgs.map((m) => m.type), ['progress', 'result']);
  });
});

describe('malformed frames break the stream', () => {
  const cases: [string, Buffer][] = [
    ['header length over 1 MiB', rawFrame('{"v":1,"type":"x"}', Buffer.alloc(0), { header: (1 << 20) + 1 })],
    ['header length under 2', rawFrame('{', Buffer.alloc(0), { header: 1 })],
    ['payload length over 512 MiB', rawFrame('{"v":1,"type":"x"}', Buffer.alloc(0), { payload: (512 << 20) + 1 })],
    ['header not JSON', rawFrame('{"v":1,')],
    ['header not UTF-8', rawFrame(Buffer.from([0x7b, 0xff, 0x7d]))],
    ['header a JSON array', rawFrame('[1,2]')],
    ['header a JSON string', rawFrame('"ready"')],
    ['header null', rawFrame('null')],
    ['missing type', rawFrame('{"v":1}')],
    ['type not a string', rawFrame('{"v":1,"type":3}')],
    ['missing v', rawFrame('{"type":"ready"}')],
    ['v = 2', rawFrame('{"v":2,"type":"ready"}')],
    ['v = "1"', rawFrame('{"v":"1","type":"ready"}')],
  ];
  for (const [name, bytes] of cases) {
    it(name, () => {
      const d = new FrameDecoder();
      assert.throws(() => d.push(bytes), ProtocolError);
      // Broken stays broken: later good frames are not read as if nothing happened.
      assert.throws(() => d.push(encodeShutdown()), ProtocolError);
    });
  }

  it('refuses a bad length as soon as the prefix arrives, without waiting for the body', () => {
    const d = new FrameDecoder();
    assert.throws(() => d.push(rawFrame('', Buffer.alloc(0), { header: 0xffffffff }).subarray(0, 8)), ProtocolError);
  });

  it('accepts v given as 1.0 (JSON numbers: 5 and 5.0 are the same value)', () => {
    assert.equal(new FrameDecoder().push(rawFrame('{"v":1.0,"type":"shutdown"}')).length, 1);
  });

  const typed: [string, Record<string, unknown>, Buffer?][] = [
    ['result without timings', { type: 'result', id: 'j', width: 1, height: 1, seed: 1 }, Buffer.alloc(3)],
    ['result payload shorter than its size', { type: 'result', id: 'j', width: 2, height: 2, seed: 1, timings: { text_ms: 0, denoise_ms: 0, decode_ms: 0, total_ms: 0 } }, Buffer.alloc(11)],
    ['progress with a string step', { type: 'progress', id: 'j', step: '1', total: 2 }],
    ['progress preview without pixels', { type: 'progress', id: 'j', step: 1, total: 2, preview: { width: 1, height: 1 } }],
    ['error without message', { type: 'error', id: 'j', code: 'internal' }],
    ['error with a numeric id', { type: 'error', id: 7, code: 'internal', message: 'm' }],
    ['ready without geometry', { type: 'ready', protocol: 1, engine_version: '0', model: 'm', variant: 'v', device: 'cpu', dtype: 'f', capabilities: { samplers: [], max_reference_images: 4, go_fast: false, preview: true } }],
  ];
  for (const [name, header, payload] of typed) {
    it(`a known message with wrong fields: ${name}`, () => {
      assert.throws(() => new EngineMessageDecoder().push(encodeFrame(header, payload)), ProtocolError);
    });
  }

  it('keeps an error code from a later version as an internal failure', () => {
    const [m] = new EngineMessageDecoder().push(encodeFrame({ type: 'error', id: 'j', code: 'thermal', message: 'hot' }));
    assert.deepEqual(m, { type: 'error', id: 'j', code: 'internal', message: '[thermal] hot' });
  });
});
