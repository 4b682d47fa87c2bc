/**
 * Validation with the contract's messages (contract §1, §2): a schema's compiled validator
 * decides, and its errors become one message per field.
 *
 *   check       typebox/compile, built once per schema. No coercion, integers are integers,
 *               unknown fields refused; the schema's refinements (well-formed text, URLs
 *               that parse: string-schemas.ts) run inside it.
 *   messages    field-errors.ts, from each error's keyword and params.
 *   rules       what JSON Schema cannot say across the fields of a generation body:
 *               `match_input_image` needs a reference image; width × height ≤ MAX_PIXELS.
 *   bounds      a value is judged on a sample (sampleOf: 65 entries of a list, 64 unknown
 *               fields), and at most MAX_ERRORS errors are gathered from it.
 *
 * The gateway runs `validatorFor(schema)` as each route's validator (gateway/validation.ts);
 * multipart fields, read after the route's validation, go through the same one.
 */
import Compile, { type Validator } from 'typebox/compile';
import { Settings } from 'typebox/system';
import type { TLocalizedValidationError } from 'typebox/error';
import type { Static, TSchema } from 'typebox';
import { ApiError, type FieldError } from './errors.js';
import { MATCH_INPUT_IMAGE } from './aspect-ratios.js';
import { AsyncBody, GenerateBody, MAX_PIXELS, type GenerateInput } from './request-schema.js';
import { fieldErrors, hasOwn, isPlainObject, knownFields, ordered } from './field-errors.js';

export type Validated<T> = { ok: true; value: T } | { ok: false; details: FieldError[] };
export type Validation = Validated<GenerateInput>;

/**
 * At most this many errors are gathered from a refused value: enough for every field of
 * our largest schema at once (a bad enum reports each choice, a sampled list each entry),
 * and a bound on the work of a refusal (TypeBox's own default is 8, for the same reason).
 */
const MAX_ERRORS = 256;
/** Entries of a list, and unknown fields, that the validator looks at first (no list here may hold more). */
const SAMPLE_LIMIT = 64;

/** Rules across the fields of a generation body; each reads only fields valid on their own. */
function generationRules(body: Record<string, unknown>, bad: ReadonlySet<string>): FieldError[] {
  const out: FieldError[] = [];
  // Implied today by the side limits (2048 × 2048 = MAX_PIXELS); kept as the contract's own rule.
  if (hasOwn(body, 'width') && hasOwn(body, 'height') && !bad.has('width') && !bad.has('height')) {
    const pixels = (body.width as number) * (body.height as number);
    if (pixels > MAX_PIXELS) out.push({ field: 'width', message: `width × height must be at most ${MAX_PIXELS} pixels, got ${pixels}` });
  }
  if (body.aspect_ratio === MATCH_INPUT_IMAGE && !bad.has('image_urls')) {
    const urls = body.image_urls;
    if (!Array.isArray(urls) || urls.length === 0) out.push({ field: 'aspect_ratio', message: 'match_input_image needs at least one entry in image_urls' });
  }
  return out;
}

type CrossFieldRules = (body: Record<string, unknown>, bad: ReadonlySet<string>) => FieldError[];
const CROSS_FIELD_RULES = new Map<TSchema, CrossFieldRules>([
  [GenerateBody, generationRules],
  [AsyncBody, generationRules],
]);

/** `validator.Errors(value)`, gathering up to MAX_ERRORS (TypeBox's limit is a global setting: restored at once). */
function errorsOf(validator: Validator, value: unknown): TLocalizedValidationError[] {
  const before = Settings.Get().maxErrors;
  Settings.Set({ maxErrors: MAX_ERRORS });
  try {
    return validator.Errors(value);
  } finally {
    Settings.Set({ maxErrors: before });
  }
}

/**
 * What the validator looks at first: lists cut to SAMPLE_LIMIT + 1 entries, and every known
 * field but only the first SAMPLE_LIMIT unknown ones. Whatever is wrong with the sample is
 * wrong with the value, and a cut part is refused anyway (a list too long, a field unknown),
 * so a hostile body (millions of entries or fields) costs what a small one does: TypeBox
 * checks a list's entries before its length, and gathers errors over all of them.
 */
function sampleOf(value: unknown, known: readonly string[]): unknown {
  const cutList = (v: unknown) => (Array.isArray(v) && v.length > SAMPLE_LIMIT + 1 ? v.slice(0, SAMPLE_LIMIT + 1) : v);
  if (!isPlainObject(value)) return cutList(value);
  let knownLeft = known.filter((k) => hasOwn(value, k)).length;
  let unknownLeft = SAMPLE_LIMIT;
  const sample: Record<string, unknown> = {};
  let cut = false;
  for (const key of Object.keys(value)) {
    if (knownLeft === 0 && unknownLeft === 0) {
      cut = true;
      break;
    }
    if (known.includes(key)) knownLeft--;
    else if (unknownLeft > 0) unknownLeft--;
    else {
      cut = true;
      continue;
    }
    const entry = cutList(value[key]);
    // Defined, not assigned: a `__proto__` field stays a field.
    Object.defineProperty(sample, key, { value: entry, enumerable: true, writable: true, configurable: true });
    cut ||= entry !== value[key];
  }
  return cut ? sample : value;
}

export type ValueValidator<T> = (value: unknown) => Validated<T>;

const validators = new WeakMap<TSchema, ValueValidator<unknown>>();

/**
 * The validator of `schema`, compiled once: the value itself when accepted (an object is
 * read as its own fields, what JSON can carry: an inherited field is not the body's), else
 * the field errors. Never throws for any input.
 */
export function validatorFor<S extends TSchema>(schema: S): ValueValidator<Static<S>> {
  const cached = validators.get(schema);
  if (cached) return cached as ValueValidator<Static<S>>;
  const compiled = Compile(schema) as unknown as Validator;
  const known = knownFields(schema);
  const rules = CROSS_FIELD_RULES.get(schema);
  const problems = (value: unknown): FieldError[] => {
    const sample = sampleOf(value, known);
    const order = isPlainObject(sample) ? Object.keys(sample) : [];
    if (!compiled.Check(sample)) return fieldErrors(schema, value, errorsOf(compiled, sample), order);
    // Only where the schema allows what was cut: the whole value, then.
    if (sample !== value && !compiled.Check(value)) return fieldErrors(schema, value, errorsOf(compiled, value), isPlainObject(value) ? Object.keys(value) : []);
    return [];
  };
  const validate = (input: unknown): Validated<Static<S>> => {
    const value = isPlainObject(input) ? { ...input } : input;
    let details = problems(value);
    if (rules && isPlainObject(value)) {
      const bad = new Set(details.map((d) => d.field.replace(/[[.].*$/, '')));
      const extra = rules(value, bad).filter((e) => !bad.has(e.field));
      if (extra.length > 0) details = ordered([...details, ...extra], known, Object.keys(value));
    }
    return details.length > 0 ? { ok: false, details } : { ok: true, value: value as Static<S> };
  };
  validators.set(schema, validate as ValueValidator<unknown>);
  return validate;
}

/** Validates a parsed body against a schema (see validatorFor). */
export function validateBody<S extends TSchema>(body: unknown, schema: S): Validated<Static<S>> {
  return validatorFor(schema)(body);
}

/** Validate a parsed JSON body for POST /v1 (allowWebhook false) or /v2 (true). */
export function validateGenerateBody(body: unknown, opts: { allowWebhook: boolean }): Validation {
  return validateBody(body, opts.allowWebhook ? AsyncBody : GenerateBody);
}

/** "steps: must be an integer from 1 to 100, got 101 (and 2 more)" */
export function summarise(details: readonly FieldError[]): string {
  const first = details[0];
  if (!first) return 'Invalid request parameters';
  const more = details.length > 1 ? ` (and ${details.length - 1} more)` : '';
  return `${first.field}: ${first.message}${more}`;
}

/** The 400 of a refused value, its details in the envelope (contract §2). */
export function validationFailed(details: FieldError[]): ApiError {
  return new ApiError('validation_failed', summarise(details), { details });
}
