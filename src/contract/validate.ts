/**
 * Strict validation of a generation body (contract §1): no type coercion, unknown fields
 * named with the allowed list, one clear message per bad field, in schema order. The
 * ranges, enums and lengths come from request-schema.ts.
 */
import type { FieldError } from '../gateway/errors.js';
import { AsyncBody, GenerateBody, MAX_PIXELS, type GenerateInput } from './request-schema.js';

export type Validation = { ok: true; value: GenerateInput } | { ok: false; details: FieldError[] };

type Prop = {
  type?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  multipleOf?: number;
  anyOf?: Array<{ const?: unknown }>;
};

const DATA_URI = /^data:image\/(png|jpeg|webp);base64,/;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === 'object') return 'an object';
  return String(v);
}

function checkProp(name: string, p: Prop, v: unknown): string | null {
  if (p.anyOf) {
    const allowed = p.anyOf.map((o) => o.const);
    if (typeof v !== 'string' || !allowed.includes(v)) return `must be one of ${allowed.join(', ')}; got ${describe(v)}`;
    return null;
  }
  switch (p.type) {
    case 'string':
      if (typeof v !== 'string') return `must be a string; got ${describe(v)}`;
      if (p.maxLength !== undefined && v.length > p.maxLength) return `must be at most ${p.maxLength} characters; got ${v.length}`;
      return null;
    case 'boolean':
      return typeof v === 'boolean' ? null : `must be true or false; got ${describe(v)}`;
    case 'integer':
    case 'number': {
      const range = `from ${p.minimum} to ${p.maximum}`;
      const kind = p.type === 'integer' ? 'an integer' : 'a number';
      const extra = p.multipleOf ? `, a multiple of ${p.multipleOf},` : '';
      if (typeof v !== 'number' || !Number.isFinite(v) || (p.type === 'integer' && !Number.isInteger(v))) {
        return `must be ${kind}${extra} ${range}; got ${describe(v)}`;
      }
      if ((p.minimum !== undefined && v < p.minimum) || (p.maximum !== undefined && v > p.maximum)) return `must be ${kind}${extra} ${range}; got ${v}`;
      if (p.multipleOf && v % p.multipleOf !== 0) return `must be a multiple of ${p.multipleOf}; got ${v}`;
      return null;
    }
    case 'array':
      if (!Array.isArray(v)) return `must be an array of strings; got ${describe(v)}`;
      if (p.maxItems !== undefined && v.length > p.maxItems) return `must have at most ${p.maxItems} entries; got ${v.length}`;
      return null;
    default:
      return null;
  }
}

function checkUrl(v: string, allowData: boolean): string | null {
  if (allowData && v.startsWith('data:')) {
    return DATA_URI.test(v) ? null : 'must be a data:image/(png|jpeg|webp);base64, URI';
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return allowData ? 'must be an https://, http:// or data:image/(png|jpeg|webp);base64, URL' : 'must be an http:// or https:// URL';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    return allowData ? 'must be an https://, http:// or data:image/(png|jpeg|webp);base64, URL' : 'must be an http:// or https:// URL';
  }
  return null;
}

export function validateGenerateBody(body: unknown, opts: { allowWebhook: boolean }): Validation {
  const schema = opts.allowWebhook ? AsyncBody : GenerateBody;
  const props = schema.properties as unknown as Record<string, Prop>;
  const allowed = Object.keys(props);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { ok: false, details: [{ field: 'body', message: `must be a JSON object; got ${describe(body)}` }] };
  }
  const b = body as Record<string, unknown>;
  const details: FieldError[] = [];
  for (const name of allowed) {
    if (!Object.prototype.hasOwnProperty.call(b, name)) continue;
    const v = b[name];
    const msg = checkProp(name, props[name] ?? {}, v);
    if (msg) {
      details.push({ field: name, message: msg });
      continue;
    }
    if ((name === 'prompt') && typeof v === 'string' && v.trim() === '') details.push({ field: name, message: 'must not be empty' });
    if (name === 'image_urls' && Array.isArray(v)) {
      v.forEach((u, i) => {
        const m = typeof u !== 'string' ? `must be a string URL; got ${describe(u)}` : u.length > 30_000_000 ? 'is too long' : checkUrl(u, true);
        if (m) details.push({ field: `image_urls[${i}]`, message: m });
      });
    }
    if (name === 'webhook_url' && typeof v === 'string') {
      const m = checkUrl(v, false);
      if (m) details.push({ field: name, message: m });
    }
  }
  if (!Object.prototype.hasOwnProperty.call(b, 'prompt')) details.unshift({ field: 'prompt', message: 'is required' });
  for (const name of Object.keys(b)) {
    if (!allowed.includes(name)) details.push({ field: name, message: `is not a known field; allowed fields: ${allowed.join(', ')}` });
  }
  const hasW = Object.prototype.hasOwnProperty.call(b, 'width');
  const hasH = Object.prototype.hasOwnProperty.call(b, 'height');
  if (hasW !== hasH) details.push({ field: hasW ? 'height' : 'width', message: 'width and height must be given together' });
  if (hasW && hasH && typeof b.width === 'number' && typeof b.height === 'number' && b.width * b.height > MAX_PIXELS) {
    details.push({ field: 'width', message: `width × height must be at most ${MAX_PIXELS} pixels; got ${b.width * b.height}` });
  }
  if (b.aspect_ratio === 'match_input_image' && !(hasW && hasH)) {
    const urls = b.image_urls;
    if (!Array.isArray(urls) || urls.length === 0) details.push({ field: 'aspect_ratio', message: 'match_input_image needs at least one entry in image_urls' });
  }
  if (details.length > 0) return { ok: false, details };
  return { ok: true, value: b as GenerateInput };
}
