/**
 * The protocol's one definition (protocol-messages.ts) against what is written down and what
 * the worker sends: protocol/messages.schema.json is exactly what the definitions give; every
 * shared fixture's header, and every header the worker encodes, is valid under its message's
 * schema; a field the schema lacks, or a renamed one, is refused. The engine's tests check the
 * Python side against the same file (engine/tests/test_protocol_schema.py).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Compile from 'typebox/compile';
import { FrameDecoder, encodeCancel, encodeGenerate, encodeShutdown, type EngineParams } from './protocol.js';
import { MESSAGES, MESSAGES_SCHEMA_FILE, type MessageType, messagesSchema, messagesSchemaText } from './protocol-messages.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'protocol/fixtures');

const validators = Object.fromEntries(Object.entries(MESSAGES).map(([type, schema]) => [type, Compile(schema)])) as {
  [K in MessageType]: ReturnType<typeof Compile>;
};
const wholeDocument = Compile(messagesSchema() as never);

/** Why `header` is not a valid message, or null when it is. */
function problems(header: Record<string, unknown>): string | null {
  const type = header.type as MessageType;
  const validator = validators[type];
  if (!validator) return `no message type ${String(header.type)}`;
  if (validator.Check(header)) {
    assert.ok(wholeDocument.Check(header), 'the document (oneOf of the $defs) agrees with the definition');
    return null;
  }
  return JSON.stringify([...validator.Errors(header)].map((e) => `${e.instancePath || '/'}: ${e.message}`));
}

function header(frame: Buffer): Record<string, unknown> {
  const frames = new FrameDecoder().push(frame);
  assert.equal(frames.length, 1);
  return frames[0]!.header as Record<string, unknown>;
}

const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ name: f.slice(0, -'.json'.length), ...(JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as { header: Record<string, unknown>; payload_hex: string }) }));

const PARAMS: EngineParams = { prompt: 'p', negative_prompt: '', seed: 1, cfg: 1, sampler: 'euler', steps: 4, width: 64, height: 64, go_fast: true };

describe(`${MESSAGES_SCHEMA_FILE}: the protocol's messages, defined once`, () => {
  it('is what protocol-messages.ts defines (else run: node --import tsx src/worker/protocol-schema-write.ts)', () => {
    assert.equal(readFileSync(join(ROOT, MESSAGES_SCHEMA_FILE), 'utf8'), messagesSchemaText());
  });

  it('has a fixture of every message type, and every fixture is valid', () => {
    assert.deepEqual(new Set(fixtures.map((f) => f.header.type)), new Set(Object.keys(MESSAGES)));
    for (const f of fixtures) assert.equal(problems(f.header), null, f.name);
  });

  it('holds every header the worker encodes', () => {
    const image = { width: 2, height: 1, data: Buffer.alloc(6) };
    const sent = [
      encodeGenerate({ id: 'a', params: PARAMS, images: [], preview: false }),
      encodeGenerate({ id: 'b', params: { ...PARAMS, sampler: 'res_2s', cfg: 4.5, seed: Number.MAX_SAFE_INTEGER }, images: [image, image], preview: true }),
      encodeGenerate({ id: 'c', params: PARAMS, images: [], preview: false, batch: { id: 'b1', size: 3 } }),
      encodeCancel('a'),
      encodeShutdown(),
    ];
    for (const frame of sent) assert.equal(problems(header(frame)), null);
  });

  it('refuses a field it lacks, a renamed one, a missing one and a wrong type, at any depth', () => {
    const byName = new Map(fixtures.map((f) => [f.name, f.header]));
    const progress = byName.get('progress')!;
    const ready = byName.get('ready')!;
    const generate = byName.get('generate')!;
    const { step, ...withoutStep } = progress;
    const refused: Record<string, unknown>[] = [
      { ...progress, eta_ms: 5 },
      { ...withoutStep, steps: step },
      withoutStep,
      { ...progress, step: '3' },
      { ...ready, capabilities: { ...(ready.capabilities as object), max_width: 2048 } },
      { ...generate, params: { ...(generate.params as object), guidance: 3 } },
      { ...byName.get('error_internal')!, code: 'thermal' },
      { v: 2, type: 'shutdown' },
    ];
    for (const h of refused) assert.notEqual(problems(h), null, JSON.stringify(h));
  });
});
