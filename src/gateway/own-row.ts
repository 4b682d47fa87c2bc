/** A request of the calling account that has not expired, or a 404 (another account's request is not found either). */
import type { FastifyRequest } from 'fastify';
import { getRequestForAccount, type RequestRow } from '../store/requests.js';
import { ApiError } from '../contract/errors.js';
import { requireCaller } from './auth.js';
import type { AppDeps } from './app.js';

export async function ownRow(deps: AppDeps, req: FastifyRequest, id: string): Promise<RequestRow> {
  const caller = requireCaller(req);
  const row = await getRequestForAccount(deps.db, id, caller.accountId);
  if (!row || Number(row.expires_at) <= Date.now()) throw new ApiError('not_found', `No request ${id}`);
  return row;
}
