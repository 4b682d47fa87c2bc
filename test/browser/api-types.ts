/**
 * The playground's compile-time types, generated from the OpenAPI document: web/src is
 * compiled on its own (web/tsconfig.json, rootDir web/src) and cannot import src/contract,
 * so web/src/api-types.d.ts is the document's `components.schemas` written as TypeScript.
 * api-types.test.ts fails when the file differs from what the server publishes now.
 *
 *   node --import tsx test/browser/api-types.ts      rewrites web/src/api-types.d.ts
 *
 * Only the JSON Schema the document uses is written: $ref, anyOf, const, enum, type (or a
 * list of types), properties with required, items, additionalProperties.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { buildServer } from '../../src/compose/server.js';
import { root } from './build-web.js';

type Json = Record<string, unknown>;

export const API_TYPES_FILE = join(root, 'web/src/api-types.d.ts');

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const REF = '#/components/schemas/';
const PRIMITIVE: Record<string, string> = { string: 'string', number: 'number', integer: 'number', boolean: 'boolean', null: 'null' };

function comment(text: unknown, indent: string): string {
  return typeof text === 'string' && text !== '' ? `${indent}/** ${text.replace(/\*\//g, '*\\/')} */\n` : '';
}

function union(types: string[]): string {
  const unique = [...new Set(types)];
  return unique.length === 0 ? 'never' : unique.join(' | ');
}

function typeOf(schema: unknown, indent: string): string {
  if (!isObject(schema)) return 'unknown';
  if (typeof schema.$ref === 'string') {
    if (!schema.$ref.startsWith(REF)) throw new Error(`api-types: unsupported $ref ${schema.$ref}`);
    return `Schemas[${JSON.stringify(schema.$ref.slice(REF.length))}]`;
  }
  if ('const' in schema) return JSON.stringify(schema.const);
  if (Array.isArray(schema.enum)) return union(schema.enum.map((v) => JSON.stringify(v)));
  if (Array.isArray(schema.anyOf)) return union(schema.anyOf.map((member) => typeOf(member, indent)));
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  return union(types.map((t) => typeOfKind(t, schema, indent)));
}

function typeOfKind(kind: unknown, schema: Json, indent: string): string {
  if (typeof kind === 'string' && PRIMITIVE[kind]) return PRIMITIVE[kind];
  if (kind === 'array') {
    const item = typeOf(schema.items, indent);
    return /^[\w"[\]']+$/.test(item) ? `${item}[]` : `Array<${item}>`;
  }
  if (kind === 'object' || kind === undefined) return objectType(schema, indent);
  throw new Error(`api-types: unsupported type ${String(kind)}`);
}

function objectType(schema: Json, indent: string): string {
  const properties = isObject(schema.properties) ? schema.properties : {};
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const inner = `${indent}  `;
  const lines = Object.entries(properties).map(
    ([name, property]) => `${comment(isObject(property) ? property.description : undefined, inner)}${inner}${/^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name)}${required.has(name) ? '' : '?'}: ${typeOf(property, inner)};\n`,
  );
  if (schema.additionalProperties !== undefined && schema.additionalProperties !== false) lines.push(`${inner}[key: string]: unknown;\n`);
  return lines.length === 0 ? 'Record<string, unknown>' : `{\n${lines.join('')}${indent}}`;
}

/** The document's named schemas as one TypeScript interface, `Schemas`, keyed by name. */
export function renderApiTypes(doc: unknown): string {
  const schemas = isObject(doc) && isObject(doc.components) && isObject(doc.components.schemas) ? doc.components.schemas : {};
  const entries = Object.entries(schemas).map(([name, schema]) => `${comment(isObject(schema) ? schema.description : undefined, '  ')}  ${name}: ${typeOf(schema, '  ')};\n`);
  return [
    '// Generated from GET /openapi.json by test/browser/api-types.ts; do not edit.',
    '// `node --import tsx test/browser/api-types.ts` writes it again; api-types.test.ts checks it.',
    '',
    '/** The named schemas of the API (components.schemas), by name. */',
    `export interface Schemas {\n${entries.join('')}}`,
    '',
  ].join('\n');
}

/** The document the server publishes now (the simulated engine: nothing is generated). */
export async function publishedDocument(): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'klein-api-types-'));
  const env = { ...process.env, KLEIN_DATA_DIR: dir, KLEIN_MODEL: 'simulated', KLEIN_LOG_LEVEL: 'silent' };
  const server = await buildServer(loadConfig(env), env);
  try {
    await server.app.ready();
    return (await server.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(API_TYPES_FILE, renderApiTypes(await publishedDocument()));
  console.log(`wrote ${API_TYPES_FILE}`);
}
