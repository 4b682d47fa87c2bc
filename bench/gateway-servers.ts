/**
 * The two servers bench/gateway.ts measures, in one process of their own (as a server runs
 * in production, apart from its clients): the gateway on the simulated engine, and a bare
 * Fastify route that answers the bytes the parent hands it. Prints one JSON line
 * `{url, bareUrl}` once both listen; then reads commands on stdin: a line of base64 is the
 * bare route's answer, `cpu` asks for the CPU time used so far; exits when stdin closes.
 *
 *   node --import tsx bench/gateway-servers.ts <dataDir>
 */
import Fastify from 'fastify';
import { createInterface } from 'node:readline';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/compose/server.js';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: gateway-servers.ts <dataDir>');
const env = { ...process.env, HOST: '127.0.0.1', PORT: '0', KLEIN_DATA_DIR: dataDir, KLEIN_MODEL: 'simulated', KLEIN_LOG_LEVEL: 'error' };
const server = await startServer(loadConfig(env), env);

let answer = Buffer.alloc(0);
const bare = Fastify();
bare.post('/v1/:model', async (_req, reply) => reply.type('image/png').send(answer));
const bareUrl = await bare.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ url: server.url, bareUrl })}\n`);

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  // `cpu`: this process's CPU time so far (all its threads: sharp's and file writes' included), in ms.
  if (line === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.stdout.write(`${(user + system) / 1000}\n`);
    return;
  }
  answer = Buffer.from(line, 'base64');
  process.stdout.write('ok\n');
});
lines.on('close', () => {
  void Promise.all([bare.close(), server.close()]).then(() => process.exit(0));
});
