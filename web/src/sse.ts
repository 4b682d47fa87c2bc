/**
 * Follows a request's event stream with the browser's own EventSource (WHATWG HTML §9.2)
 * on its signed `events_url`: the link's token stands for the key, which EventSource
 * cannot send (contract §9). Resuming is the server's (contract §4): every event has an
 * id, and
 *
 * - a dropped connection: EventSource reconnects by itself, sending `Last-Event-ID`, and
 *   the server goes on after that event — nothing missed, nothing twice;
 * - a refused one (EventSource then gives up: an expired token is a 403): the page asks
 *   for a fresh link (`renew`, from the request record) and opens it with
 *   `last_event_id` in the query, since a new EventSource cannot set the header.
 *
 * The stream ends at the terminal event; the source is closed there, before EventSource
 * would reconnect to a stream the server ended.
 */
import { NetworkFailure, local } from './api.js';

export interface StreamEvent {
  event: string;
  data: string;
  id: string;
}

/** The events the server sends (contract §4); EventSource delivers named events only to listeners of that name. */
const NAMES = ['queued', 'progress', 'completed', 'failed', 'cancelled'] as const;
const ENDS: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);
/** Fresh links asked for before the page gives up on the stream (it then polls the record). */
const MAX_RENEWALS = 3;

export interface FollowOptions {
  signal: AbortSignal;
  /** A fresh events_url (its token renewed), when the server refused the current one. */
  renew: () => Promise<string>;
}

/** The stream's events (live previews asked for), up to and including the terminal one. */
export async function* followEvents(eventsUrl: string, opts: FollowOptions): AsyncGenerator<StreamEvent> {
  let url = eventsUrl;
  let lastId = '';
  for (let renewals = 0; ; renewals++) {
    const u = new URL(local(url), location.href);
    u.searchParams.set('preview', 'true');
    if (lastId) u.searchParams.set('last_event_id', lastId);
    const source = new EventSource(u.href);
    const inbox: Array<StreamEvent | 'closed'> = [];
    let wake: (() => void) | null = null;
    const put = (x: StreamEvent | 'closed') => {
      inbox.push(x);
      wake?.();
      wake = null;
    };
    for (const name of NAMES) {
      source.addEventListener(name, (e) => {
        const m = e as MessageEvent<string>;
        put({ event: name, data: m.data, id: m.lastEventId });
      });
    }
    // CONNECTING after an error: EventSource is reconnecting by itself; CLOSED: it gave up.
    source.addEventListener('error', () => source.readyState === EventSource.CLOSED && put('closed'));
    const onAbort = () => put('closed');
    opts.signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        while (inbox.length === 0) await new Promise<void>((r) => (wake = r));
        const x = inbox.shift()!;
        if (x === 'closed') break;
        if (x.id) lastId = x.id;
        yield x;
        if (ENDS.has(x.event)) return;
      }
    } finally {
      source.close();
      opts.signal.removeEventListener('abort', onAbort);
    }
    opts.signal.throwIfAborted();
    if (renewals >= MAX_RENEWALS) throw new NetworkFailure('the event stream was refused');
    url = await opts.renew();
  }
}
