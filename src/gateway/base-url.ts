/**
 * The public base URL that links in answers start with: KLEIN_PUBLIC_URL when set (behind a
 * proxy), else the scheme and host the request came in on.
 */
import type { FastifyRequest } from 'fastify';
import type { AppDeps } from './app.js';

export function baseUrl(deps: Pick<AppDeps, 'config'>, req: FastifyRequest): string {
  return deps.config.publicUrl || `${req.protocol}://${req.host}`;
}
