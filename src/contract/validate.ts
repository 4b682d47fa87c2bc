/**
 * Strict validation of a generation body (contract §1): no type coercion, integers are
 * integers, unknown fields named with the allowed list, ONE clear message per bad field,
 * in schema order (unknown fields last, in body order).
 *
 * The ranges, lengths, enums and patterns are read from the TypeBox schema in
 * request-schema.ts, so the messages cannot drift from what the route schema and the
 * OpenAPI document publish. What JSON Schema cannot say is checked here too: an http(s)
 * URL must parse with a host, `match_input_image` needs a reference image, and
 * width × height ≤ MAX_PIXELS. Finally the schema's compiled validator (built once per
 * schema) must agree: a body it refuses is never accepted, whatever the hand-written
 * checks missed.
 */
import Compile from 'typebox/compile';
import type { Validator } from 'typebox/compile';
import type { FieldError } from './errors.js';
import { MATCH_INPUT_IMAGE } from './aspect-ratios.js';
import { AsyncBody, GenerateBody, MAX_PIXELS, MAX_SEED, RANDOM_SEED, type GenerateInput } from './request-schema.js';
import type { OpenAiImagesBody } from './openai-schema.js';

export type Validated<T> = { ok: true; value: T } | { ok: false; details: FieldError[] };
export type Validation = Validated<GenerateInput>;

/** The JSON Schema keywords our schema uses on a property. */
interface PropSchema {
  type?: string;
  minimum?: number;
  maximum?: number;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  maxItems?: number;
  items?: PropSchema;
  anyOf?: Array<{ const?: unknown }>;
}

export type BodySchema = typeof GenerateBody | typeof AsyncBody | typeof OpenAiImagesBody;

const compiled = new Map<BodySchema, Validator>();
function compiledFor(schema: BodySchema): Validator {
  let v = compiled.get(schema);
  if (!v) {
    v = Compile(schema) as unknown as Validator;
    compiled.set(schema, v);
  }
  return v;
}

const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

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

/**
 * Where `s` holds a lone surrogate (not well-formed Unicode: JSON can carry one as `\ud800`,
 * UTF-8 cannot, so the engine could never read the text), or -1.
 */
export function loneSurrogateAt(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return -1;
}

/** Length in Unicode code points, as JSON Schema's maxLength counts (UTF-16 units ≥ code points). */
function codePoints(s: string, limit: number): number {
  if (s.length <= limit) return s.length;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

const URL_MESSAGE = 'must be an https://, http:// or data:image/(png|jpeg|webp);base64, URL';
const WEBHOOK_MESSAGE = 'must be an http:// or https:// URL';

function httpUrlProblem(v: string): boolean {
  if (!/^https?:\/\//.test(v)) return true;
  try {
    return new URL(v).hostname === '';
  } catch {
    return true;
  }
}

/** What a string field's `pattern` means, as a message; null when the value is fine. */
const FORMATS: Record<string, (v: string) => string | null> = {
  prompt: (v) => (v.trim() === '' ? 'must not be empty' : null),
  image_urls: (v) => {
    if (v.startsWith('data:')) {
      const m = /^data:image\/(png|jpeg|webp);base64,/.exec(v);
      if (!m) return URL_MESSAGE;
      return v.length === m[0].length ? 'must not be an empty data: URI' : null;
    }
    return httpUrlProblem(v) ? URL_MESSAGE : null;
  },
  webhook_url: (v) => (httpUrlProblem(v) ? WEBHOOK_MESSAGE : null),
};

/** How a number field's allowed values read, where min…max alone would mislead. */
const RANGE_TEXT: Record<string, string> = {
  seed: `an integer from 0 to ${MAX_SEED}, or ${RANDOM_SEED} for a random seed`,
};

function numberRange(name: string, p: PropSchema): string {
  const fixed = p.minimum === RANDOM_SEED ? RANGE_TEXT[name] : undefined;
  if (fixed) return fixed;
  const kind = p.type === 'integer' ? (p.multipleOf ? `a multiple of ${p.multipleOf}` : 'an integer') : 'a number';
  return `${kind} from ${p.minimum} to ${p.maximum}`;
}

function checkString(name: string, p: PropSchema, v: unknown): string | null {
  if (typeof v !== 'string') return `must be a string, got ${describeValue(v)}`;
  const bad = loneSurrogateAt(v);
  if (bad >= 0) return `must be well-formed Unicode text: it holds a lone surrogate (U+${v.charCodeAt(bad).toString(16).toUpperCase()}) at position ${bad}`;
  if (p.minLength !== undefined && v.length < p.minLength) return 'must not be empty';
  if (p.maxLength !== undefined) {
    const n = codePoints(v, p.maxLength);
    if (n > p.maxLength) return `must be at most ${p.maxLength} characters, got ${n}`;
  }
  const format = FORMATS[name];
  if (format) return format(v);
  if (p.pattern !== undefined && !new RegExp(p.pattern, 'u').test(v)) return `must match ${p.pattern}`;
  return null;
}

/** The errors of one present property: none, one for the field, or one per bad array entry. */
function checkProperty(name: string, p: PropSchema, v: unknown): FieldError[] {
  const one = (message: string | null) => (message ? [{ field: name, message }] : []);
  if (p.anyOf) {
    const allowed = p.anyOf.map((o) => o.const);
    return one(allowed.includes(v) ? null : `must be one of ${oneOf(allowed)}, got ${describeValue(v)}`);
  }
  switch (p.type) {
    case 'string':
      return one(checkString(name, p, v));
    case 'boolean':
      return one(typeof v === 'boolean' ? null : `must be true or false, got ${describeValue(v)}`);
    case 'integer':
    case 'number': {
      const ok =
        typeof v === 'number' &&
        Number.isFinite(v) &&
        (p.type === 'number' || Number.isInteger(v)) &&
        (p.minimum === undefined || v >= p.minimum) &&
        (p.maximum === undefined || v <= p.maximum) &&
        (p.multipleOf === undefined || v % p.multipleOf === 0);
      return one(ok ? null : `must be ${numberRange(name, p)}, got ${describeValue(v)}`);
    }
    case 'array': {
      if (!Array.isArray(v)) return one(`must be an array of strings, got ${describeValue(v)}`);
      if (p.maxItems !== undefined && v.length > p.maxItems) return one(`must have at most ${p.maxItems} entries, got ${v.length}`);
      const items = p.items ?? {};
      const out: FieldError[] = [];
      v.forEach((item, i) => {
        const m = checkString(name, items, item);
        if (m) out.push({ field: `${name}[${i}]`, message: m });
      });
      return out;
    }
    default:
      throw new Error(`request-schema: no validation written for ${name} (${JSON.stringify(p)})`);
  }
}

/** Rules across fields; each applies only when the fields it reads are valid on their own. */
function crossFieldErrors(b: Record<string, unknown>, bad: Set<string>): FieldError[] {
  const out: FieldError[] = [];
  const hasW = hasOwn(b, 'width');
  const hasH = hasOwn(b, 'height');
  if (hasW && !hasH) out.push({ field: 'height', message: 'is required when width is given' });
  if (hasH && !hasW) out.push({ field: 'width', message: 'is required when height is given' });
  // Implied today by the side limits (2048 × 2048 = MAX_PIXELS); kept as the contract's own rule.
  if (hasW && hasH && !bad.has('width') && !bad.has('height')) {
    const pixels = (b.width as number) * (b.height as number);
    if (pixels > MAX_PIXELS) out.push({ field: 'width', message: `width × height must be at most ${MAX_PIXELS} pixels, got ${pixels}` });
  }
  if (b.aspect_ratio === MATCH_INPUT_IMAGE && !bad.has('image_urls')) {
    const urls = b.image_urls;
    if (!Array.isArray(urls) || urls.length === 0) {
      out.push({ field: 'aspect_ratio', message: 'match_input_image needs at least one entry in image_urls' });
    }
  }
  return out;
}

/** The schema's own verdict, as field errors: reached only if the checks above missed something. */
function schemaErrors(validator: Validator, b: unknown): FieldError[] {
  return validator.Errors(b).map((e) => ({
    field: e.instancePath.replace(/^\//, '').replace(/\/(\d+)(?=\/|$)/g, '[$1]').replace(/\//g, '.') || 'body',
    message: e.message,
  }));
}

/**
 * The hand-written checks alone: every problem with a message of ours, in order (schema
 * order for known fields, image_urls[i] with image_urls, unknown fields last in body
 * order). `body` must be a non-array object.
 */
export function fieldErrors(b: Record<string, unknown>, schema: BodySchema): FieldError[] {
  const props = schema.properties as unknown as Record<string, PropSchema>;
  const names = Object.keys(props);
  const required = new Set<string>((schema as { required?: string[] }).required ?? []);

  const byField: FieldError[] = [];
  const bad = new Set<string>();
  for (const name of names) {
    if (!hasOwn(b, name)) {
      if (required.has(name)) {
        byField.push({ field: name, message: 'is required' });
        bad.add(name);
      }
      continue;
    }
    const errs = checkProperty(name, props[name]!, b[name]);
    if (errs.length > 0) bad.add(name);
    byField.push(...errs);
  }
  for (const e of crossFieldErrors(b, bad)) {
    if (!bad.has(e.field)) {
      byField.push(e);
      bad.add(e.field);
    }
  }
  const rank = (f: string) => names.indexOf(f.replace(/\[\d+\]$/, ''));
  const details = byField.map((e, i) => ({ e, i })).sort((x, y) => rank(x.e.field) - rank(y.e.field) || x.i - y.i).map((x) => x.e);
  for (const key of Object.keys(b)) {
    if (!hasOwn(props, key)) details.push({ field: key, message: `is not a known field; allowed fields: ${names.join(', ')}` });
  }
  return details;
}

/**
 * Validates a parsed body against one of the body schemas: the hand-written messages, then
 * the schema's compiled validator as a backstop (a body it refuses is never accepted).
 * Never throws for any input; the accepted value is the body itself, without defaults.
 */
export function validateBody<T>(body: unknown, schema: BodySchema): Validated<T> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { ok: false, details: [{ field: 'body', message: `must be a JSON object, got ${describeValue(body)}` }] };
  }
  const b = body as Record<string, unknown>;
  const details = fieldErrors(b, schema);
  // The backstop: the published schema never accepts less than we do (a test shows that
  // fieldErrors alone already refuses whatever the schema refuses).
  if (details.length === 0 && !compiledFor(schema).Check(b)) details.push(...schemaErrors(compiledFor(schema), b));
  if (details.length > 0) return { ok: false, details };
  return { ok: true, value: b as T };
}

/** Validate a parsed JSON body for POST /v1 (allowWebhook false) or /v2 (true). */
export function validateGenerateBody(body: unknown, opts: { allowWebhook: boolean }): Validation {
  return validateBody<GenerateInput>(body, opts.allowWebhook ? AsyncBody : GenerateBody);
}
