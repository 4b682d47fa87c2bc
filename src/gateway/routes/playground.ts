/**
 * The browser playground: the page at GET / and GET /playground, its files at
 * GET /playground/{file}. The page and stylesheet are web/'s own files; the script is
 * web/src/*.ts compiled by web/tsconfig.json into dist/web/ (part of `npm run build`).
 *
 * A file name must match ASSET_NAME, the route's parameter schema (letters, digits and
 * dashes, then .js or .css: no slashes, dots or encodings that could leave the folder; any
 * other name is a 404 before the handler runs) and is looked up in the one folder
 * its extension belongs to. Answers carry an ETag and `Cache-Control: no-cache` (names are
 * not content-hashed, so a browser revalidates and gets a 304 until the files change), and
 * the page a Content-Security-Policy that lets it load only this server's scripts and
 * styles and talk only to this server.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { projectRoot } from '../../config.js';
import { ApiError } from '../../contract/errors.js';
import type { App } from '../app.js';
import { errorResponses, NOT_MODIFIED } from '../route-schema.js';

const ASSET_NAME = '^[a-z][a-z0-9-]*\\.(js|css)$';
const CONTENT_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
};
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  // previews and results are data: and blob: URLs; reference links may point anywhere
  "img-src 'self' data: blob: https: http:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const html = { description: 'The page', content: { 'text/html': { schema: Type.String() } } };
const pageSchema = (operationId: string, summary: string) => ({ operationId, tags: ['playground'], summary, response: { 200: html, 304: NOT_MODIFIED } });

const assetSchema = {
  operationId: 'getPlaygroundFile',
  tags: ['playground'],
  summary: "The playground's script modules and stylesheet",
  params: Type.Object({ file: Type.String({ pattern: ASSET_NAME, description: 'A script module (name.js) or the stylesheet (name.css)' }) }),
  response: {
    200: { description: 'JavaScript or CSS', content: { 'text/javascript': { schema: Type.String() }, 'text/css': { schema: Type.String() } } },
    304: NOT_MODIFIED,
    ...errorResponses(404),
  },
};

export function registerPlaygroundRoutes(app: App): void {
  const root = projectRoot();
  const folders: Record<string, string> = { html: join(root, 'web'), css: join(root, 'web'), js: join(root, 'dist', 'web') };

  /** Answers the file (or 304); the reply is sent when this returns. */
  async function send(req: FastifyRequest, reply: FastifyReply, name: string): Promise<void> {
    const ext = name.slice(name.lastIndexOf('.') + 1);
    const folder = folders[ext];
    if (folder === undefined) throw new ApiError('not_found', `No playground file ${name}`);
    let bytes: Buffer;
    try {
      bytes = await readFile(join(folder, name));
    } catch {
      const hint = ext === 'js' ? ' (the page script is built by `npm run build`)' : '';
      throw new ApiError('not_found', `No playground file ${name}${hint}`);
    }
    const etag = `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 22)}"`;
    reply.header('cache-control', 'no-cache').header('etag', etag).header('x-content-type-options', 'nosniff');
    if (ext === 'html') reply.header('content-security-policy', CSP).header('referrer-policy', 'no-referrer');
    if (req.headers['if-none-match'] === etag) reply.status(304).send();
    else reply.type(CONTENT_TYPES[ext]!).send(bytes);
  }

  const page = (req: FastifyRequest, reply: FastifyReply) => send(req, reply, 'index.html');
  app.get('/', { schema: pageSchema('getIndexPage', 'The browser playground (same page as /playground)') }, page);
  app.get('/playground', { schema: pageSchema('getPlaygroundPage', 'The browser playground: generate with every parameter, live progress, history') }, page);
  app.get('/playground/:file', { schema: assetSchema }, async (req, reply) => send(req, reply, req.params.file));
}
