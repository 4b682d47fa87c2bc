/**
 * The OpenAPI 3.1 document (GET /openapi.json) and a reference page (GET /docs). Request
 * bodies are the same TypeBox schemas the validator reads, so the document cannot drift
 * from what the server accepts; a test checks that every registered route is described.
 */
import type { FastifyInstance } from 'fastify';
import { AsyncBody, GenerateBody } from '../contract/request-schema.js';
import { OpenAiImagesBody } from '../contract/openai-schema.js';
import { MODEL_SLUG } from '../contract/models.js';
import { ERRORS } from '../contract/errors.js';

const json = (schema: object) => ({ 'application/json': { schema } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const errorResponses = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [
      String(s),
      {
        description: Object.entries(ERRORS)
          .filter(([, e]) => e.status === s)
          .map(([code]) => code)
          .join(', '),
        content: json(ref('Error')),
      },
    ]),
  );
const idParam = [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }];
const modelParam = [{ name: 'model', in: 'path', required: true, schema: { type: 'string', const: MODEL_SLUG } }];
const idemHeader = { name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', maxLength: 255 } };
const rateHeaders = {
  'x-rate-limit-remaining': { schema: { type: 'integer' } },
  'x-rate-limit-reset-at-utc': { schema: { type: 'string', format: 'date-time' } },
};
const imageHeaders = {
  'x-request-id': { schema: { type: 'string' } },
  'x-seed-value': { schema: { type: 'integer' } },
  'x-generation-time': { schema: { type: 'string' } },
  'x-cost': { schema: { type: 'string' } },
  'x-remaining-credits': { schema: { type: 'string' } },
  ...rateHeaders,
};
const images = { 'image/png': { schema: { type: 'string', format: 'binary' } }, 'image/jpeg': { schema: { type: 'string', format: 'binary' } }, 'image/webp': { schema: { type: 'string', format: 'binary' } } };
const secured = [{ ApiKey: [] }, { Bearer: [] }];
const plainJson = (description: string, schema: object = { type: 'object' }) => ({ description, content: json(schema) });

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'klein-serve',
      version: '0.1.0',
      description: 'Self-hosted, Segmind-compatible API for FLUX.2 [klein] 4B: text-to-image and image editing.',
    },
    components: {
      securitySchemes: {
        ApiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
        Bearer: { type: 'http', scheme: 'bearer' },
      },
      schemas: {
        GenerateBody,
        AsyncBody,
        OpenAiImagesBody,
        Error: {
          type: 'object',
          required: ['error', 'code', 'request_id'],
          properties: {
            error: { type: 'string' },
            code: { type: 'string', enum: Object.keys(ERRORS) },
            request_id: { type: 'string' },
            details: { type: 'array', items: { type: 'object', properties: { field: { type: 'string' }, message: { type: 'string' } } } },
          },
        },
        Submitted: {
          type: 'object',
          properties: Object.fromEntries(['request_id', 'status', 'status_url', 'response_url', 'output_url', 'cancel_url', 'events_url'].map((k) => [k, { type: 'string' }])),
        },
        Status: {
          type: 'object',
          properties: {
            request_id: { type: 'string' },
            status: { type: 'string', enum: ['QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED'] },
            queue_position: { type: 'integer' },
            progress: { type: ['object', 'null'], properties: { step: { type: 'integer' }, total: { type: 'integer' } } },
            metrics: { type: 'object' },
          },
        },
      },
    },
    paths: {
      '/v1/{model}': {
        post: {
          summary: 'Generate an image (synchronous, Segmind-compatible)',
          security: secured,
          parameters: [...modelParam, idemHeader],
          requestBody: { required: true, content: json(ref('GenerateBody')) },
          responses: {
            200: { description: 'The image (or JSON with base64 when asked)', headers: imageHeaders, content: { ...images, ...json({ type: 'object' }) } },
            ...errorResponses(400, 401, 403, 404, 406, 408, 409, 413, 422, 429, 500, 502, 503, 504),
          },
        },
      },
      '/v2/{model}': {
        post: {
          summary: 'Queue a generation (asynchronous)',
          security: secured,
          parameters: [...modelParam, idemHeader],
          requestBody: { required: true, content: json(ref('AsyncBody')) },
          responses: { 200: plainJson('Queued', ref('Submitted')), ...errorResponses(400, 401, 404, 406, 408, 413, 422, 429, 500, 502, 503) },
        },
      },
      '/v2/requests/{id}/status': {
        get: { summary: 'Status, queue position and progress', security: secured, parameters: idParam, responses: { 200: plainJson('Status', ref('Status')), ...errorResponses(401, 404) } },
      },
      '/v2/requests/{id}': {
        get: {
          summary: 'The request record (input, status, error, metrics, output)',
          security: secured,
          parameters: [...idParam, { name: 'base64', in: 'query', required: false, schema: { type: 'boolean' } }],
          responses: { 200: plainJson('Record'), ...errorResponses(401, 404) },
        },
      },
      '/v2/requests/{id}/output': {
        get: { summary: 'The output image', security: secured, parameters: idParam, responses: { 200: { description: 'Image', content: images }, ...errorResponses(401, 404) } },
      },
      '/v2/requests/{id}/cancel': {
        post: { summary: 'Cancel a queued or running request (not charged)', security: secured, parameters: idParam, responses: { 200: plainJson('Cancelled or already finished'), ...errorResponses(401, 404, 413, 429) } },
      },
      '/v2/requests/{id}/events': {
        get: {
          summary: 'Server-Sent Events: queued, progress (optional preview), then completed, failed or cancelled',
          security: secured,
          parameters: [...idParam, { name: 'preview', in: 'query', required: false, schema: { type: 'boolean' } }],
          responses: { 200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errorResponses(401, 404) },
        },
      },
      '/v1/images/generations': {
        post: {
          summary: 'OpenAI-compatible: generate n (1–4) images',
          security: secured,
          requestBody: { required: true, content: json(ref('OpenAiImagesBody')) },
          responses: { 200: plainJson('{created, data: [{b64_json} | {url}]}'), ...errorResponses(400, 401, 406, 408, 409, 413, 429, 500, 502, 503, 504) },
        },
      },
      '/v1/images/edits': {
        post: {
          summary: 'OpenAI-compatible: edit with 1–4 reference images (multipart: image or image[])',
          security: secured,
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': {
                schema: {
                  type: 'object',
                  required: ['prompt', 'image'],
                  properties: { ...OpenAiImagesBody.properties, image: { type: 'array', items: { type: 'string', format: 'binary' }, minItems: 1, maxItems: 4 } },
                  additionalProperties: false,
                },
              },
            },
          },
          responses: { 200: plainJson('{created, data: [{b64_json} | {url}]}'), ...errorResponses(400, 401, 406, 408, 409, 413, 429, 500, 502, 503, 504) },
        },
      },
      '/v1/get-user-credits': {
        get: { summary: "The caller's balance", security: secured, responses: { 200: plainJson('Balance', { type: 'object', properties: { credits: { type: 'number' }, account_id: { type: 'string' } } }), ...errorResponses(401) } },
      },
      '/admin/accounts': { get: { summary: 'Accounts (admin key)', security: secured, responses: { 200: plainJson('Accounts'), ...errorResponses(401, 403, 429) } } },
      '/admin/accounts/{id}/credits': {
        post: {
          summary: 'Grant credits (admin key)',
          security: secured,
          parameters: idParam,
          requestBody: { required: true, content: json({ type: 'object', required: ['credits'], properties: { credits: { type: ['number', 'string'] } } }) },
          responses: { 200: plainJson('New balance'), ...errorResponses(400, 401, 403, 404, 408, 413, 429) },
        },
      },
      '/admin/accounts/{id}/usage': { get: { summary: 'Usage of an account (admin key)', security: secured, parameters: idParam, responses: { 200: plainJson('Usage'), ...errorResponses(401, 403, 404, 429) } } },
      '/health': { get: { summary: 'State: STARTING, READY, BUSY, UNHEALTHY (with the reason)', responses: { 200: plainJson('Health') } } },
      '/health/ready': { get: { summary: '200 when work can be taken, else 503', responses: { 200: plainJson('Ready'), 503: plainJson('Not ready') } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { 200: { description: 'text/plain exposition', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
      '/openapi.json': { get: { summary: 'This document', responses: { 200: plainJson('OpenAPI 3.1') } } },
      '/docs': { get: { summary: 'A reference page for this API', responses: { 200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } } } },
      '/': { get: { summary: 'The browser playground (same page as /playground)', responses: { 200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } }, 304: { description: 'Not modified (If-None-Match matched the ETag)' } } } },
      '/playground': { get: { summary: 'The browser playground: generate with every parameter, live progress, history', responses: { 200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } }, 304: { description: 'Not modified (If-None-Match matched the ETag)' } } } },
      '/playground/{file}': {
        get: {
          summary: "The playground's script modules and stylesheet",
          parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z][a-z0-9-]*\\.(js|css)$' } }],
          responses: {
            200: { description: 'JavaScript or CSS', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } },
            304: { description: 'Not modified (If-None-Match matched the ETag)' },
            ...errorResponses(404),
          },
        },
      },
    },
  };
}

/** OpenAPI path template of a Fastify route (`/v2/requests/:id` → `/v2/requests/{id}`). */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z_]+)/g, '{$1}');
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function docsPage(doc: Record<string, any>): string {
  const rows: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
    for (const [method, op] of Object.entries(ops)) {
      const codes = Object.keys(op.responses ?? {}).join(' ');
      rows.push(`<tr><td><code>${method.toUpperCase()}</code></td><td><code>${esc(path)}</code></td><td>${esc(op.summary ?? '')}</td><td>${codes}</td></tr>`);
    }
  }
  const props = Object.entries((doc.components.schemas.AsyncBody.properties ?? {}) as Record<string, any>)
    .map(([name, p]) => `<tr><td><code>${name}</code></td><td>${esc(String(p.type ?? (p.anyOf ? p.anyOf.map((x: any) => x.const).join(' | ') : '')))}</td><td>${p.default !== undefined ? esc(JSON.stringify(p.default)) : ''}</td><td>${esc(p.description ?? '')}</td></tr>`)
    .join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>klein-serve API</title><style>body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}code{font-size:13px}</style></head>
<body><h1>klein-serve API</h1><p>${esc(doc.info.description)} Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<h2>Routes</h2><table><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>${rows.join('')}</table>
<h2>Generation body</h2><table><tr><th>field</th><th>type</th><th>default</th><th>meaning</th></tr>${props}</table></body></html>`;
}

export function registerOpenApiRoutes(app: FastifyInstance): void {
  const doc = openApiDocument();
  const page = docsPage(doc);
  app.get('/openapi.json', async () => doc);
  app.get('/docs', async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
}
