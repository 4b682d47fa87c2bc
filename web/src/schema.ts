/**
 * What the page knows about the generation body, read at run time from /openapi.json: the
 * request schema of `POST /v2/{model}`, which is the TypeBox schema the server validates
 * with (src/contract/request-schema.ts). Every default, range and choice the form shows
 * comes from here, so the page cannot drift from the server.
 */

/** The asynchronous submit route in the document; its `model` parameter names the model. */
const SUBMIT_PATH = '/v2/{model}';

export type FieldKind = 'text' | 'integer' | 'number' | 'choice' | 'boolean' | 'list';

export interface FieldSpec {
  name: string;
  kind: FieldKind;
  description: string;
  required: boolean;
  default?: string | number | boolean;
  minimum?: number;
  maximum?: number;
  multipleOf?: number;
  maxLength?: number;
  /** A string's (or a list item's) `pattern`, as the server checks it. */
  pattern?: string;
  /** `choice`: the allowed values, in the schema's order. */
  choices?: string[];
  /** `list`: at most this many items. */
  maxItems?: number;
}

export interface BodySpec {
  /** The model slug of the submit path (its `model` parameter's `const`). */
  model: string;
  /** Every body field, in the schema's order. */
  fields: FieldSpec[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function at(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const key of path) cur = isObject(cur) ? cur[key] : undefined;
  return cur;
}

/** Follows a local `#/components/…` reference. */
function deref(doc: Json, v: unknown): unknown {
  const ref = str(at(v, '$ref'));
  if (ref === undefined) return v;
  if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
  return at(doc, ...ref.slice(2).split('/'));
}

/** The allowed values of an `enum` or of an `anyOf` of `const`s (TypeBox's literal unions). */
function choicesOf(p: Json): string[] | undefined {
  if (Array.isArray(p.enum) && p.enum.every((x) => typeof x === 'string')) return p.enum as string[];
  if (Array.isArray(p.anyOf)) {
    const consts = p.anyOf.map((x) => at(x, 'const'));
    if (consts.every((x): x is string => typeof x === 'string')) return consts;
  }
  return undefined;
}

function fieldOf(name: string, p: Json, required: boolean): FieldSpec {
  const base = { name, description: str(p.description) ?? '', required };
  const dflt = p.default;
  const choices = choicesOf(p);
  if (choices) return { ...base, kind: 'choice', choices, ...(typeof dflt === 'string' ? { default: dflt } : {}) };
  const bounds = { minimum: num(p.minimum), maximum: num(p.maximum), multipleOf: num(p.multipleOf) };
  switch (p.type) {
    case 'integer':
    case 'number':
      return { ...base, kind: p.type, ...bounds, ...(typeof dflt === 'number' ? { default: dflt } : {}) };
    case 'boolean':
      return { ...base, kind: 'boolean', ...(typeof dflt === 'boolean' ? { default: dflt } : {}) };
    case 'string':
      return { ...base, kind: 'text', maxLength: num(p.maxLength), pattern: str(p.pattern), ...(typeof dflt === 'string' ? { default: dflt } : {}) };
    case 'array':
      return { ...base, kind: 'list', maxItems: num(p.maxItems), pattern: str(at(p, 'items', 'pattern')) };
    default:
      throw new Error(`field ${name}: unsupported schema type ${String(p.type)}`);
  }
}

/** Reads the body schema out of an OpenAPI document. */
export function bodySpecOf(doc: unknown): BodySpec {
  if (!isObject(doc)) throw new Error('the OpenAPI document is not an object');
  const op = at(doc, 'paths', SUBMIT_PATH, 'post');
  const params = at(op, 'parameters');
  const modelParam = Array.isArray(params) ? params.find((x) => at(x, 'name') === 'model') : undefined;
  const model = str(at(modelParam, 'schema', 'const'));
  const schema = deref(doc, at(op, 'requestBody', 'content', 'application/json', 'schema'));
  const props = at(schema, 'properties');
  if (model === undefined || !isObject(props)) throw new Error(`the OpenAPI document does not describe POST ${SUBMIT_PATH}`);
  const required = new Set((at(schema, 'required') as unknown[] | undefined)?.filter((x): x is string => typeof x === 'string'));
  const fields = Object.entries(props).map(([name, p]) => {
    if (!isObject(p)) throw new Error(`field ${name}: not a schema`);
    return fieldOf(name, p, required.has(name));
  });
  return { model, fields };
}

export async function loadBodySpec(): Promise<BodySpec> {
  const res = await fetch('/openapi.json', { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`GET /openapi.json answered ${res.status}`);
  return bodySpecOf(await res.json());
}
