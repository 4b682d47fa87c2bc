/**
 * The key-less links the server hands out for a request (contract §9), built from the
 * signer (signed-links.ts) and the output storage:
 *
 * - the output: S3's presigned URL where the storage has one, else this server's
 *   `/v2/requests/<id>/output?expires=…&sig=…` (KLEIN_LINK_TTL);
 * - the event stream: `/v2/requests/<id>/events?expires=…&sig=…`, short-lived
 *   (KLEIN_EVENTS_LINK_TTL), so that a browser's EventSource, which cannot send a header,
 *   can follow it.
 *
 * Only the path is signed, never the scheme and host, so the same link verifies behind a
 * proxy or KLEIN_PUBLIC_URL; the base is prefixed after signing. A client may add its own
 * query parameters (`&preview=true`): the check is over the route's path alone.
 */
import { ApiError } from '../contract/errors.js';
import type { LinkCheck, LinkSigner } from './signed-links.js';
import type { OutputStorage } from './types.js';

/** The path of a request's output, as signed. */
export const outputPath = (id: string): string => `/v2/requests/${id}/output`;
/** The path of a request's event stream, as signed. */
export const eventsPath = (id: string): string => `/v2/requests/${id}/events`;

export interface LinkLifetimes {
  /** KLEIN_LINK_TTL (seconds). */
  linkTtlS: number;
  /** KLEIN_EVENTS_LINK_TTL (seconds). */
  eventsLinkTtlS: number;
}

/** The two query parameters of a signed link, as presented (unchecked). */
export interface PresentedLink {
  expires?: unknown;
  sig?: unknown;
}

/** Whether a request presents a signed link (either parameter: a half link is checked, and refused, not ignored). */
export function presentsLink(query: unknown): query is PresentedLink {
  const q = (query ?? {}) as PresentedLink;
  return q.expires !== undefined || q.sig !== undefined;
}

export class RequestLinks {
  constructor(
    private readonly signer: LinkSigner,
    private readonly storage: Pick<OutputStorage, 'directUrl'>,
    private readonly ttl: LinkLifetimes,
  ) {}

  /** The key-less link to a request's output (`outputKey`: where the storage keeps it). */
  async output(base: string, id: string, outputKey: string, now = Date.now()): Promise<string> {
    const presigned = await this.storage.directUrl(outputKey, this.ttl.linkTtlS);
    return presigned ?? `${trim(base)}${this.signer.sign(outputPath(id), this.ttl.linkTtlS, now)}`;
  }

  /** The request's events_url, carrying its short-lived token. */
  events(base: string, id: string, now = Date.now()): string {
    return `${trim(base)}${this.signer.sign(eventsPath(id), this.ttl.eventsLinkTtlS, now)}`;
  }

  /** What the presented `expires` and `sig` are for `path`. */
  check(path: string, presented: PresentedLink, now = Date.now()): LinkCheck {
    return this.signer.check(path, presented.expires, presented.sig, now);
  }

  /** Returns when the link is valid; else the 403 that says whether it is expired or not valid at all. */
  require(path: string, presented: PresentedLink, now = Date.now()): void {
    const verdict = this.check(path, presented, now);
    if (verdict === 'expired') throw new ApiError('link_expired');
    if (verdict === 'invalid') throw new ApiError('invalid_link');
  }
}

const trim = (base: string) => base.replace(/\/$/, '');
