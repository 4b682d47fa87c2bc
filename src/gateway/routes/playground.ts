/**
 * The browser playground: the page at GET / and GET /playground, its files at
 * GET /playground/{file}. The page and stylesheet are web/'s own files; the script is
 * web/src/*.ts compiled by web/tsconfig.json into dist/web/ (part of `npm run build`).
 *
 * A file name must match ASSET_NAME (letters, digits and dashes, then .js or .css: no
 * slashes, dots or encodings that could leave the folder) and is looked up in the one folder
 * its extension belongs to. Answers carry an ETag and `Cache-Control: no-cache` (names are
 * not content-hashed, so a browser revalidates and gets a 304 until the files change), and
 * the page a Content-Security-Policy that lets it load only this server's scripts and
 * styles and talk only to this server.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { projectRoot } from '../../config.js';
import { ApiError } from '../../contract/errors.js';

const ASSET_NAME = /^[a-z][a-z0-9-]*\.(js|css)$/;
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

export function registerPlaygroundRoutes(app: FastifyInstance): void {
  const root = projectRoot();
  const folders: Record<string, string> = { html: join(root, 'web'), css: join(root, 'web'), js: join(root, 'dist', 'web') };

  async function send(req: FastifyRequest, reply: FastifyReply, name: string): Promise<FastifyReply> {
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
    if (req.headers['if-none-match'] === etag) return reply.status(304).send();
    return reply.type(CONTENT_TYPES[ext]!).send(bytes);
  }

  const page = (req: FastifyRequest, reply: FastifyReply) => send(req, reply, 'index.html');
  app.get('/', page);
  app.get('/playground', page);
  app.get<{ Params: { file: string } }>('/playground/:file', async (req, reply) => {
    const name = req.params.file;
    if (!ASSET_NAME.test(name)) throw new ApiError('not_found', `No playground file ${name}`);
    return send(req, reply, name);
  });
}
