/**
 * What the page says for each failure: one specific sentence per status of contract §2,
 * with the server's own message where it carries facts (the price and balance of a 406,
 * the limit of a 429), and what to do next. No DOM here: test/browser/messages.test.ts
 * checks every status.
 */
import type { Schemas } from './api-types.js';

export interface Failure {
  status: number;
  /** The server's `error` message. */
  message: string;
  code: string;
  requestId: string;
  details: NonNullable<Schemas['Error']['details']>;
  retryAfter: number | null;
}

/** The server's message as a sentence (its messages carry no final stop). */
const end = (m: string) => (/[.!?]$/.test(m) ? m : `${m}.`);
const seconds = (n: number) => `${n} second${n === 1 ? '' : 's'}`;
const ref = (f: Failure) => (f.requestId ? ` (request ${f.requestId})` : '');

/** The sentence shown in the message area for a failed API call. */
export function describeFailure(f: Failure): string {
  switch (f.status) {
    case 400:
      if (f.details.length > 0) {
        const list = f.details.map((d) => `${d.field} ${d.message}`).join('; ');
        return `The server refused ${f.details.length === 1 ? 'a parameter' : `${f.details.length} parameters`} (400): ${end(list)}`;
      }
      return `The server refused the request (400): ${end(f.message)}`;
    case 401:
      return 'The API key was refused (401): it is missing, unknown or revoked. Check the key, or make one with `klein keys create`.';
    case 403:
      return `This key may not do this (403): ${end(f.message)}`;
    case 404:
      return `Not found (404): ${end(f.message)} Requests and their images expire after the server's retention time.`;
    case 406:
      return `Not enough credits (406): ${end(f.message)} Add credits with \`klein credits add\`, or use fewer steps or a smaller size.`;
    case 408:
      return `The request did not reach the server in time (408): ${end(f.message)} Check the connection and try again.`;
    case 409:
      return `The request was cancelled (409): ${end(f.message)} Nothing was charged.`;
    case 413:
      return `The request is too large for this server (413): ${end(f.message)} Use smaller reference images, or links to them.`;
    case 422:
      return `Conflict (422): ${end(f.message)}`;
    case 431:
      return 'The request headers are too large for this server (431). Nothing was charged.';
    case 429: {
      const wait = f.retryAfter !== null ? ` Try again in ${seconds(f.retryAfter)}.` : '';
      return `Too many requests for this key (429): ${end(f.message)}${wait}`;
    }
    case 500:
      return `The server hit a bug (500)${ref(f)}; it is logged with the request id. Nothing was charged.`;
    case 502:
      return `No engine could run this (502): ${end(f.message)} Nothing was charged; try again.`;
    case 503: {
      const wait = f.retryAfter !== null ? ` Try again in ${seconds(f.retryAfter)}.` : ' Try again shortly.';
      return `The server is starting or shutting down (503): ${end(f.message)}${wait}`;
    }
    case 504:
      return `The request did not finish in time (504): ${end(f.message)} It was cancelled and not charged.`;
    default:
      return `The server answered ${f.status}: ${f.message}${ref(f)}.`;
  }
}

/** The sentence for a request that ended without an image (a `failed` or `cancelled` event). */
export function describeEnd(status: string, error: Schemas['RequestRecord']['error']): string {
  if (status === 'CANCELLED') return 'Cancelled. Nothing was charged.';
  const why = error ? `${error.message || error.code}${error.code ? ` (${error.code})` : ''}` : 'no reason given';
  return `Generation failed: ${why}. Nothing was charged.`;
}
