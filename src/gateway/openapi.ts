/**
 * The OpenAPI 3.1 document (GET /openapi.json) and a reference page (GET /docs), generated
 * by @fastify/swagger from the routes' own schemas: the TypeBox schemas that validate each
 * request and serialize each answer are the ones published, so the document cannot drift
 * from what the server does. A test checks that every registered route is described.
 *
 * The named schemas (COMPONENTS) are registered as shared schemas: the document lists them
 * under `components.schemas` by their `$id`, and routes refer to them (route-schema.ts `ref`).
 */
import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import Type, { type TSchema } from 'typebox';
import { AsyncBody, GenerateBody } from '../contract/request-schema.js';
import { OpenAiEditsForm, OpenAiError, OpenAiImagesBody, OpenAiImagesResponse } from '../contract/openai-schema.js';
import { Cancellation, Credits, ErrorEnvelope, GeneratedImage, ProgressEvent, QueuedEvent, RequestRecord, StatusView, Submitted, TerminalEvent } from '../contract/responses.js';
import { AccountList, CreditBalance, CreditGrant, Usage } from '../contract/admin-schema.js';
import { Health, ReadyCheck } from '../contract/health-schema.js';
import type { App } from './app.js';
import { componentName, json, text } from './route-schema.js';

/** Every named schema of the document, by its `$id` (the name it has under components.schemas). */
export const COMPONENTS: ReadonlyMap<string, TSchema> = new Map(
  [
    GenerateBody,
    AsyncBody,
    OpenAiImagesBody,
    OpenAiEditsForm,
    ErrorEnvelope,
    GeneratedImage,
    Submitted,
    StatusView,
    RequestRecord,
    Cancellation,
    QueuedEvent,
    ProgressEvent,
    TerminalEvent,
    Credits,
    OpenAiImagesResponse,
    OpenAiError,
    AccountList,
    CreditGrant,
    CreditBalance,
    Usage,
    Health,
    ReadyCheck,
  ].map((schema): [string, TSchema] => [componentName(schema), schema]),
);

const TAGS = [
  { name: 'generate', description: 'Synchronous generation, Segmind-compatible (contract §1)' },
  { name: 'requests', description: 'The asynchronous API: submit, follow, fetch, cancel (contract §4)' },
  { name: 'openai', description: 'OpenAI-compatible image routes (contract §8)' },
  { name: 'account', description: "The caller's own account" },
  { name: 'admin', description: 'Accounts and credits (an admin key)' },
  { name: 'health', description: 'State, readiness and metrics (no key)' },
  { name: 'docs', description: 'This document and its page' },
  { name: 'playground', description: 'The browser playground' },
];

/** Registers @fastify/swagger and the components; before any route, so that it sees them all. */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
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
      },
      tags: TAGS,
    },
    // OpenAPI 3.1 has `const`; the playground reads the model parameter's.
    convertConstToEnum: false,
    // A shared schema is named by its $id (`#/components/schemas/GenerateBody`), not def-N.
    refResolver: { buildLocalReference: (schema, _base, _fragment, i) => (typeof schema.$id === 'string' ? schema.$id : `def-${i}`) },
  });
  for (const schema of COMPONENTS.values()) app.addSchema(schema);
}

/** OpenAPI path template of a Fastify route (`/v2/requests/:id` → `/v2/requests/{id}`). */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z_]+)/g, '{$1}');
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

type Json = Record<string, any>;

function docsPage(doc: Json): string {
  const rows: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Json>)) {
    for (const [method, op] of Object.entries(ops as Record<string, Json>)) {
      const codes = Object.keys(op.responses ?? {}).join(' ');
      rows.push(`<tr><td><code>${method.toUpperCase()}</code></td><td><code>${esc(path)}</code></td><td>${esc(op.summary ?? '')}</td><td>${codes}</td></tr>`);
    }
  }
  const props = Object.entries((doc.components.schemas.AsyncBody.properties ?? {}) as Record<string, Json>)
    .map(([name, p]) => `<tr><td><code>${name}</code></td><td>${esc(String(p.type ?? (p.anyOf ? p.anyOf.map((x: Json) => x.const).join(' | ') : '')))}</td><td>${p.default !== undefined ? esc(JSON.stringify(p.default)) : ''}</td><td>${esc(p.description ?? '')}</td></tr>`)
    .join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>klein-serve API</title><style>body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}code{font-size:13px}</style></head>
<body><h1>klein-serve API</h1><p>${esc(doc.info.description)} Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<h2>Routes</h2><table><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>${rows.join('')}</table>
<h2>Generation body</h2><table><tr><th>field</th><th>type</th><th>default</th><th>meaning</th></tr>${props}</table></body></html>`;
}

export function registerOpenApiRoutes(app: App): void {
  let page: string | undefined;
  app.get(
    '/openapi.json',
    {
      schema: {
        operationId: 'getOpenApiDocument',
        tags: ['docs'],
        summary: 'This document',
        response: { 200: json(Type.Object({}, { additionalProperties: true }), 'OpenAPI 3.1') },
      },
    },
    async () => app.swagger(),
  );
  app.get(
    '/docs',
    { schema: { operationId: 'getDocsPage', tags: ['docs'], summary: 'A reference page for this API', response: { 200: text('text/html', 'HTML') } } },
    async (_req, reply) => reply.type('text/html; charset=utf-8').send((page ??= docsPage(app.swagger()))),
  );
}
