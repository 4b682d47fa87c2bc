/**
 * What the page knows about the served models and their generation bodies, read at run time
 * from /openapi.json: each served model has its own `POST /v2/<slug>` (contract §6), whose
 * operationId starts with `submitRequest` (plain for the first served model, suffixed for the
 * others) and whose body is the TypeBox schema the server validates with
 * (src/contract/request-schema.ts: AsyncBody, or AsyncBodyBase for a base model). Every
 * default, range and choice the form shows comes from here, so the page cannot drift from
 * the server.
 */

/** The submit operations: POST under /v2/, operationId `submitRequest` or `submitRequest_<slug>`. */
const SUBMIT_PREFIX = '/v2/';
const SUBMIT_OPERATION = 'submitRequest';

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
  /** `list` of objects (`loras`): each item's fields, in the schema's order. */
  itemFields?: FieldSpec[];
}

export interface BodySpec {
  /** The model slug: the last segment of its submit path, `/v2/<slug>`. */
  model: string;
  /** What the document says the model is ("Runs <slug> (<variant>; defaults: …)"); '' when it says nothing. */
  about: string;
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
    case 'array': {
      const items = at(p, 'items');
      const props = at(items, 'properties');
      const needed = new Set((at(items, 'required') as unknown[] | undefined)?.filter((x): x is string => typeof x === 'string'));
      const itemFields = isObject(props)
        ? Object.entries(props).map(([n, q]) => {
            if (!isObject(q)) throw new Error(`field ${name}.${n}: not a schema`);
            return fieldOf(n, q, needed.has(n));
          })
        : undefined;
      return { ...base, kind: 'list', maxItems: num(p.maxItems), pattern: str(at(items, 'pattern')), ...(itemFields ? { itemFields } : {}) };
    }
    default:
      throw new Error(`field ${name}: unsupported schema type ${String(p.type)}`);
  }
}

/** The body of one submit operation. */
function bodyOf(doc: Json, path: string, model: string, op: unknown): BodySpec {
  const schema = deref(doc, at(op, 'requestBody', 'content', 'application/json', 'schema'));
  const props = at(schema, 'properties');
  if (!isObject(props)) throw new Error(`the OpenAPI document has no body schema for POST ${path}`);
  const required = new Set((at(schema, 'required') as unknown[] | undefined)?.filter((x): x is string => typeof x === 'string'));
  const fields = Object.entries(props).map(([name, p]) => {
    if (!isObject(p)) throw new Error(`field ${name}: not a schema`);
    return fieldOf(name, p, required.has(name));
  });
  // The operation's description ends with "Runs <slug> (<variant>; defaults: N steps, cfg X)."
  const about = /\bRuns \S+ \(([^)]*)\)/.exec(str(at(op, 'description')) ?? '')?.[1] ?? '';
  return { model, about, fields };
}

/**
 * Every served model's body schema, read out of an OpenAPI document: the first served model
 * (operationId exactly `submitRequest`) first, then the others in the document's order.
 */
export function bodySpecsOf(doc: unknown): BodySpec[] {
  if (!isObject(doc)) throw new Error('the OpenAPI document is not an object');
  const paths = at(doc, 'paths');
  const specs: Array<BodySpec & { first: boolean }> = [];
  for (const [path, item] of Object.entries(isObject(paths) ? paths : {})) {
    const op = at(item, 'post');
    const id = str(at(op, 'operationId'));
    if (!path.startsWith(SUBMIT_PREFIX) || id === undefined || !id.startsWith(SUBMIT_OPERATION)) continue;
    const model = path.slice(SUBMIT_PREFIX.length);
    // A literal slug: one segment, no path parameter (`/v2/{model}` is not a model).
    if (model === '' || /[/{}]/.test(model)) continue;
    specs.push({ ...bodyOf(doc, path, model, op), first: id === SUBMIT_OPERATION });
  }
  if (specs.length === 0) throw new Error(`the OpenAPI document has no ${SUBMIT_OPERATION} operation under POST ${SUBMIT_PREFIX}`);
  // A stable sort: the first served model ahead, the rest as the document lists them.
  specs.sort((a, b) => Number(b.first) - Number(a.first));
  return specs.map(({ first: _, ...spec }) => spec);
}

export async function loadBodySpecs(): Promise<BodySpec[]> {
  const res = await fetch('/openapi.json', { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`GET /openapi.json answered ${res.status}`);
  return bodySpecsOf(await res.json());
}
