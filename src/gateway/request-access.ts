/**
 * Which request a call may read: one of the calling account's (by the API key), or the one a
 * valid signed link names, of whichever account (the link stands for its owner's key,
 * contract §9). Either way an expired request is a 404, and another account's request read
 * with a key is not found either.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { getRequest, getRequestForAccount, type RequestRow } from '../store/requests.js';
import { ApiError } from '../contract/errors.js';
import { presentsLink, type RequestLinks } from '../storage/request-links.js';
import { requireCaller } from './auth.js';
import type { AppDeps } from './app.js';

function unexpired(row: RequestRow | null, id: string): RequestRow {
  if (!row || Number(row.expires_at) <= Date.now()) throw new ApiError('not_found', `No request ${id}`);
  return row;
}

/** A request of the calling account that has not expired, or a 404. */
export async function ownRow(deps: AppDeps, req: FastifyRequest, id: string): Promise<RequestRow> {
  return unexpired(await getRequestForAccount(deps.db, id, requireCaller(req).accountId), id);
}

type Hook = (req: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * For a route a signed link may open (`pathOf(id)`: the path the link signs): `hook`, its
 * onRequest, checks the link before anything else is read, as `auth` checks the key — a half
 * link is checked, and refused (403), not ignored; a call without one goes through `auth`.
 * `row` is then the request the call may read.
 */
export function keyOrLink(auth: Hook, links: RequestLinks, pathOf: (id: string) => string) {
  // Calls whose signed link was checked valid (they have no caller).
  const linked = new WeakSet<FastifyRequest>();
  return {
    hook: async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
      if (!presentsLink(req.query)) return auth(req, reply);
      links.require(pathOf((req.params as { id: string }).id), req.query);
      linked.add(req);
    },
    row: async (deps: AppDeps, req: FastifyRequest, id: string): Promise<RequestRow> =>
      linked.has(req) ? unexpired(await getRequest(deps.db, id), id) : ownRow(deps, req, id),
  };
}
