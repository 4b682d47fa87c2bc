/**
 * The routes' validator compiler (Fastify's validation stage, after the onRequest hooks and
 * the body parser): each part of a request is checked by its route schema, compiled once by
 * contract/validate.ts, which words every refusal as the contract's field messages.
 *
 *   params        a path that names nothing here: 404 not_found (an unknown model)
 *   body          400 validation_failed with one detail per bad field (contract §2)
 *   querystring   400 validation_failed, the same messages
 *   headers       400 validation_failed, the same messages
 *
 * Fastify checks them in that order and stops at the first part refused. Path and query
 * values arrive as text and are converted first (TypeBox Value.Convert: `true`, `1` → true);
 * a JSON body never is (contract §1: no coercion). A multipart body is a stream that its
 * handler reads; the handler validates the fields once read, with the same validator.
 * A `$ref` names a component of the document (openapi.ts) and is checked as that schema
 * itself, so that its refinements run.
 */
import type { FastifySchemaCompiler } from 'fastify';
import type { TSchema } from 'typebox';
import Value from 'typebox/value';
import { ApiError } from '../contract/errors.js';
import { validationFailed, validatorFor } from '../contract/validate.js';

/** `{ $ref: 'GenerateBody' }` → the component itself; any other schema as it is. */
function resolved(schema: TSchema, components: ReadonlyMap<string, TSchema>): TSchema {
  const name = (schema as { $ref?: unknown }).$ref;
  if (typeof name !== 'string') return schema;
  const target = components.get(name);
  if (!target) throw new Error(`route schema: no component ${name} (openapi.ts registers them)`);
  return target;
}

export function routeValidatorCompiler(components: ReadonlyMap<string, TSchema>): FastifySchemaCompiler<TSchema> {
  return ({ schema, httpPart, contentType }) => {
    if (httpPart === 'body' && contentType === 'multipart/form-data') return () => true;
    const target = resolved(schema, components);
    const validate = validatorFor(target);
    const converts = httpPart === 'params' || httpPart === 'querystring';
    return (input: unknown) => {
      const value = converts ? Value.Convert(target, input) : input;
      const result = validate(value);
      if (result.ok) return converts ? { value: result.value } : true;
      if (httpPart !== 'params') return { error: validationFailed(result.details) };
      const first = result.details[0]!;
      return { error: new ApiError('not_found', `Not found: ${first.field} ${first.message}`) };
    };
  };
}
