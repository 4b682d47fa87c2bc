/**
 * Knowing that a client has gone before its answer (contract §2: a synchronous call whose
 * client disconnects at any moment before its answer is cancelled and not charged). The
 * signal is armed when the request arrives, so a disconnect during any later stage — the
 * body, validation, reference fetches and decodes, the queue, the run — is seen, even one
 * that happened before the stage that looks at it.
 */
import type { FastifyReply } from 'fastify';
import { clientClosed } from '../contract/errors.js';

/**
 * Aborts when the connection closes before the answer was fully written: the response's
 * 'close' comes after 'finish' on a normal end, and alone when the socket went away.
 */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  const res = reply.raw;
  const gone = () => {
    if (!res.writableFinished) ac.abort(clientClosed());
  };
  if (res.destroyed || res.socket?.destroyed) gone();
  else res.once('close', gone);
  return ac.signal;
}
