/**
 * The one formatter: a compiled TypeBox validator's errors as the contract's field errors
 * (contract §2: `details: [{ field, message }]`, one per field).
 *
 * Each message is worded from its error's keyword and params, and from the schema node the
 * error's `schemaPath` names where the message states the whole rule (a range, a union's
 * choices, a list's item type); the value in a message is read at the error's
 * `instancePath`. One message per field: its first error, and an entry of a list only when
 * the list itself is fine. Known fields in schema order, unknown ones last in body order.
 */
import type { TLocalizedValidationError } from 'typebox/error';
import type { TSchema } from 'typebox';
import type { FieldError } from './errors.js';
import { PATTERN_MESSAGES, RANDOM_SEED } from './request-schema.js';

type SchemaNode = Record<string, unknown>;
export const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
export const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
/** An object schema's field names, in its order. */
export const knownFields = (schema: TSchema): string[] => {
  const properties = (schema as { properties?: unknown }).properties;
  return isPlainObject(properties) ? Object.keys(properties) : [];
};

/** A short, safe rendering of a received value for a message. */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'number' && Object.is(v, -0)) return '0';
  return String(v);
}

/** "a, b or c" */
function oneOf(values: unknown[]): string {
  const s = values.map(String);
  return s.length <= 1 ? s.join('') : `${s.slice(0, -1).join(', ')} or ${s[s.length - 1]}`;
}

/** Length in Unicode code points, as JSON Schema's maxLength counts. */
function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** `/image_urls/0` → `image_urls[0]`; the value itself (``) → `body`. */
function fieldOf(instancePath: string): string {
  if (instancePath === '') return 'body';
  return instancePath
    .slice(1)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((out, part) => (/^\d+$/.test(part) ? `${out}[${part}]` : out === '' ? part : `${out}.${part}`), '');
}

/** The value or schema node a JSON Pointer names (`#/properties/steps`, `/image_urls/0`). */
function at(root: unknown, pointer: string): unknown {
  const parts = pointer.replace(/^#/, '').split('/').slice(1);
  let cur = root;
  for (const p of parts) {
    const key = p.replace(/~1/g, '/').replace(/~0/g, '~');
    cur = cur !== null && typeof cur === 'object' && hasOwn(cur, key) ? (cur as Record<string, unknown>)[key] : undefined;
  }
  return cur;
}

/** "an integer from 1 to 100", "a multiple of 16 from 64 to 2048", or the seed's own wording. */
function numberRange(node: SchemaNode): string {
  const { minimum: min, maximum: max, multipleOf } = node;
  // The contract's seed: 0 and up, plus the sentinel below the range that picks one.
  if (min === RANDOM_SEED && node.type === 'integer') return `an integer from 0 to ${String(max)}, or ${RANDOM_SEED} for a random seed`;
  const kind = node.type === 'integer' ? (multipleOf !== undefined ? `a multiple of ${String(multipleOf)}` : 'an integer') : 'a number';
  return min !== undefined && max !== undefined ? `${kind} from ${String(min)} to ${String(max)}` : kind;
}

const ARTICLE: Record<string, string> = { string: 'a string', number: 'a number', integer: 'an integer', boolean: 'true or false', object: 'an object', array: 'an array', null: 'null' };

/** What a value of `node`'s type must be, for a type error. */
function typeText(node: SchemaNode): string {
  switch (node.type) {
    case 'integer':
    case 'number':
      return numberRange(node);
    case 'object':
      return 'a JSON object';
    case 'array': {
      const items = isPlainObject(node.items) ? node.items.type : undefined;
      return typeof items === 'string' ? `an array of ${items}s` : 'an array';
    }
    default:
      return typeof node.type === 'string' ? (ARTICLE[node.type] ?? node.type) : 'of another type';
  }
}

/** A union's message: its constants ("one of euler or res_2s"), or its members' types. */
function unionText(union: SchemaNode): string {
  const members = Array.isArray(union.anyOf) ? (union.anyOf as SchemaNode[]) : [];
  const consts = members.map((m) => m.const);
  if (members.length > 0 && consts.every((c) => c !== undefined)) return `one of ${oneOf(consts)}`;
  return oneOf(members.map(typeText));
}

/**
 * The message of one error about a value (not about which fields are present). `node` is
 * the schema the error's `schemaPath` names; `value` the value its `instancePath` names.
 */
function messageOf(error: TLocalizedValidationError, root: TSchema, value: unknown): string {
  const path = error.schemaPath;
  // An error inside a union (a literal that did not match) speaks for the whole union.
  const inUnion = error.keyword === 'anyOf' ? path : path.includes('/anyOf/') ? path.slice(0, path.indexOf('/anyOf/')) : null;
  if (inUnion !== null) return `must be ${unionText((at(root, inUnion) ?? {}) as SchemaNode)}, got ${describeValue(value)}`;
  const node = (at(root, path) ?? {}) as SchemaNode;
  switch (error.keyword) {
    case 'type':
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
    case 'multipleOf':
      return `must be ${typeText(node)}, got ${describeValue(value)}`;
    case 'minLength':
      return error.params.limit === 1 ? 'must not be empty' : `must be at least ${error.params.limit} characters`;
    case 'maxLength':
      return `must be at most ${error.params.limit} characters, got ${typeof value === 'string' ? codePoints(value) : '?'}`;
    case 'minItems':
    case 'maxItems':
      return `must have at ${error.keyword === 'minItems' ? 'least' : 'most'} ${error.params.limit} entries, got ${Array.isArray(value) ? value.length : '?'}`;
    case 'pattern': {
      const pattern = String(error.params.pattern);
      return PATTERN_MESSAGES[pattern] ?? `must match ${pattern}`;
    }
    case 'const':
      return `must be ${String(error.params.allowedValue)}, got ${describeValue(value)}`;
    case 'enum':
      return `must be one of ${oneOf(error.params.allowedValues)}, got ${describeValue(value)}`;
    case '~refine':
      return error.params.message;
    default:
      return error.message;
  }
}

/**
 * The compiled validator's errors as the contract's field errors: one per field, in schema
 * order, unknown fields last in the order of `bodyOrder` (the body's keys).
 */
export function fieldErrors(root: TSchema, value: unknown, errors: readonly TLocalizedValidationError[], bodyOrder: readonly string[]): FieldError[] {
  const known = knownFields(root);
  const present = isPlainObject(value) ? value : {};
  const found: FieldError[] = [];
  const unknownField = (field: string) => found.push({ field, message: `is not a known field; allowed fields: ${known.join(', ')}` });
  for (const e of errors) {
    const base = fieldOf(e.instancePath);
    const prefix = e.instancePath === '' ? '' : `${base}.`;
    switch (e.keyword) {
      case 'required':
        for (const name of e.params.requiredProperties) if (!hasOwn(present, name)) found.push({ field: prefix + name, message: 'is required' });
        break;
      case 'dependentRequired':
        for (const name of e.params.dependencies) {
          if (!hasOwn(present, name)) found.push({ field: prefix + name, message: `is required when ${e.params.property} is given` });
        }
        break;
      case 'additionalProperties':
        for (const name of e.params.additionalProperties) unknownField(prefix + name);
        break;
      case 'boolean':
        // A `false` schema: here only additionalProperties: false, for one unknown field.
        if (e.schemaPath.endsWith('/additionalProperties')) unknownField(base);
        else found.push({ field: base, message: e.message });
        break;
      default:
        found.push({ field: base, message: messageOf(e, root, at(value, e.instancePath)) });
    }
  }
  return ordered(onePerField(found), known, bodyOrder);
}

/** The first error of each field, and none inside a field that has one (a list's entries). */
function onePerField(errors: FieldError[]): FieldError[] {
  const first = new Map<string, FieldError>();
  for (const e of errors) if (!first.has(e.field)) first.set(e.field, e);
  const fields = [...first.keys()];
  const inside = (field: string) => fields.some((f) => field.startsWith(`${f}[`) || field.startsWith(`${f}.`));
  return [...first.values()].filter((e) => !inside(e.field));
}

/** Known fields in schema order (a list's entries with the list), then unknown ones in body order. */
export function ordered(errors: FieldError[], known: readonly string[], bodyOrder: readonly string[]): FieldError[] {
  const rank = (field: string) => {
    const name = field.replace(/[[.].*$/, '');
    const k = known.indexOf(name);
    return k >= 0 ? k : known.length + Math.max(0, bodyOrder.indexOf(name));
  };
  return errors
    .map((e, i) => ({ e, i }))
    .sort((x, y) => rank(x.e.field) - rank(y.e.field) || x.i - y.i)
    .map((x) => x.e);
}
