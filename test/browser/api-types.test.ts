/**
 * The playground's types are the server's: web/src/api-types.d.ts is what api-types.ts
 * writes from the OpenAPI document the server publishes now, and it compiles with the page.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { API_TYPES_FILE, publishedDocument, renderApiTypes } from './api-types.js';

it('web/src/api-types.d.ts is the published document written as TypeScript', async () => {
  const doc = await publishedDocument();
  const expected = renderApiTypes(doc);
  assert.equal(readFileSync(API_TYPES_FILE, 'utf8'), expected, 'out of date: run `node --import tsx test/browser/api-types.ts`');
  // Every named schema is there, and the status list is the server's.
  const names = Object.keys((doc as { components: { schemas: Record<string, unknown> } }).components.schemas);
  for (const name of names) assert.match(expected, new RegExp(`^  ${name}: `, 'm'), name);
  assert.match(expected, /status: "QUEUED" \| "PROCESSING" \| "COMPLETED" \| "FAILED" \| "CANCELLED";/);
});

it('writes each kind of schema the document uses', () => {
  const text = renderApiTypes({
    components: {
      schemas: {
        Thing: {
          type: 'object',
          description: 'A thing',
          required: ['a', 'b'],
          properties: {
            a: { type: 'integer', description: 'an */ end' },
            b: { anyOf: [{ type: 'string', const: 'x' }, { type: 'null' }] },
            c: { type: 'array', items: { $ref: '#/components/schemas/Other' } },
            'd-e': { type: ['string', 'null'] },
            f: { enum: ['p', 'q'] },
          },
          additionalProperties: true,
        },
        Other: { type: 'object', properties: {} },
      },
    },
  });
  assert.match(text, /\/\*\* A thing \*\/\n {2}Thing: \{/);
  assert.match(text, /\/\*\* an \*\\\/ end \*\/\n {4}a: number;/);
  assert.match(text, / {4}b: "x" \| null;/);
  assert.match(text, / {4}c\?: Schemas\["Other"\]\[\];/);
  assert.match(text, / {4}"d-e"\?: string \| null;/);
  assert.match(text, / {4}f\?: "p" \| "q";/);
  assert.match(text, / {4}\[key: string\]: unknown;/);
  assert.match(text, / {2}Other: Record<string, unknown>;/);
  assert.throws(() => renderApiTypes({ components: { schemas: { Bad: { $ref: 'elsewhere.json#/x' } } } }), /unsupported \$ref/);
});
