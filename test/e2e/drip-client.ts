/**
 * A client that sends a request head and then drips its body one byte at a time, as a
 * process of its own: `node --import tsx drip-client.ts <url> <head, base64> <every ms>
 * <wait ms>` prints the server's answer (net-helpers' RawAnswer, `ms` from connecting to
 * the close) as JSON. The default-timeout test times a server process with it, so the test
 * process's event loop, which the suites beside it keep busy, is in neither clock.
 */
import { drip, rawExchange } from './net-helpers.js';

const [url, head, every, wait] = process.argv.slice(2);
const answer = await rawExchange(url!, Buffer.from(head!, 'base64').toString('latin1'), {
  then: (s) => drip(s, 100_000, Number(every), ' '),
  waitMs: Number(wait),
});
process.stdout.write(`${JSON.stringify(answer)}\n`);
process.exit(0);
