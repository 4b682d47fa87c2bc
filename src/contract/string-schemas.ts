/**
 * The kinds of string field the API's schemas are made of.
 *
 * `Choice` is a union of literals that keeps its values in the TypeScript type. The others
 * add what a string must be beyond its JSON Schema keywords, as TypeBox refinements: the
 * compiled validator of a schema runs them once the field's own keywords pass
 * (typebox/compile, `~refine`) and reports their message as its error. The published
 * document cannot carry a refinement (it is a function), so each field's `description`
 * says the rule too.
 *
 *   well-formed text   no lone surrogate: JSON can carry `\ud800`, UTF-8 cannot, so the
 *                      engine could never read such text (every string field)
 *   http(s) URL        parses with a host (`https://` alone passes the pattern, not this)
 *   data: URI          carries bytes after its header
 */
import Type, { type TLiteral, type TSchemaOptions, type TStringOptions, type TUnion } from 'typebox';

type Literals<T extends readonly string[]> = { -readonly [K in keyof T]: TLiteral<T[K]> };

/** One of `values` (JSON Schema `anyOf` of `const`s), typed as the union of the values. */
export function Choice<const T extends readonly string[]>(values: T, options: TSchemaOptions = {}): TUnion<Literals<T>> {
  return Type.Union(values.map((v) => Type.Literal(v)), options) as unknown as TUnion<Literals<T>>;
}

/** Where `s` holds a lone surrogate (not well-formed Unicode), or -1. */
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

function surrogateMessage(s: string): string {
  const at = loneSurrogateAt(s);
  return `must be well-formed Unicode text: it holds a lone surrogate (U+${s.charCodeAt(at).toString(16).toUpperCase()}) at position ${at}`;
}

/** A string field whose value must be well-formed Unicode. */
export function Text(options: TStringOptions = {}) {
  return Type.Refine(Type.String(options), (s: string) => loneSurrogateAt(s) < 0, surrogateMessage);
}

/** True unless `v` is an http:// or https:// URL that parses with a host. */
export function isBadHttpUrl(v: string): boolean {
  if (!/^https?:\/\//.test(v)) return true;
  try {
    return new URL(v).hostname === '';
  } catch {
    return true;
  }
}

export const IMAGE_URL_MESSAGE = 'must be an https://, http:// or data:image/(png|jpeg|webp);base64, URL';
export const WEBHOOK_URL_MESSAGE = 'must be an http:// or https:// URL';
const DATA_URI_HEADER = /^data:image\/(png|jpeg|webp);base64,/;

/** Why a reference image URL that matched its pattern is still refused, or null. */
function imageUrlProblem(v: string): string | null {
  const header = DATA_URI_HEADER.exec(v);
  if (header) return v.length === header[0].length ? 'must not be an empty data: URI' : null;
  return isBadHttpUrl(v) ? IMAGE_URL_MESSAGE : null;
}

/** A reference image URL (`pattern` says which schemes): http(s) with a host, or a data: URI with bytes. */
export function ImageUrl(options: TStringOptions) {
  return Type.Refine(Text(options), (v: string) => imageUrlProblem(v) === null, (v: string) => imageUrlProblem(v) ?? '');
}

/** A webhook URL (`pattern` says which schemes): http(s) with a host. */
export function WebhookUrl(options: TStringOptions) {
  return Type.Refine(Text(options), (v: string) => !isBadHttpUrl(v), () => WEBHOOK_URL_MESSAGE);
}
