/**
 * Gateway benchmark: what the TypeScript path adds to a synchronous request, measured
 * against the simulated engine (`KLEIN_MODEL=simulated`: protocol-exact, no model, zero
 * GPU time), over real HTTP on loopback.
 *
 *   node --import tsx bench/gateway.ts [--requests 300] [--concurrency 8] [--warmup 2000] [--out FILE]
 *
 * The servers run in a process of their own (gateway-servers.ts), apart from this client,
 * as in production: the gateway, and beside it a bare Fastify route that takes the same
 * request and answers the same bytes. Reports:
 * - latency p50/p99 of a 64×64 request (auth, validation, pricing, ledger, queue, engine
 *   round trip, PNG encode, response) and of the bare route, calls alternating so both see
 *   the same load; their difference is the gateway's own cost, and their ratio holds from
 *   one machine to another;
 * - the servers' CPU time per request of each (less sensitive to a busy machine);
 * - the PNG encode time of a 1024×1024 image (from the server's stage histogram);
 * - requests per second with several clients (one engine serialises generation, so this is
 *   the gateway + engine-loop ceiling).
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openDatabase } from '../src/store/db.js';
import { createKey } from '../src/accounts/keys.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2000' },
    out: { type: 'string' },
  },
});
const N = Number(values.requests);
const C = Number(values.concurrency);
// Requests to each route before measuring: a server's code runs interpreted until V8 has
// seen it often enough to optimise it, and a few dozen requests leave most of it there.
const WARMUP = Number(values.warmup);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Starts bench/gateway-servers.ts; resolves with its URLs and a way to set the bare route's answer. */
async function startServers(dataDir: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./gateway-servers.ts', import.meta.url)), dataDir], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error('the benchmark servers exited');
    return r.value;
  };
  const { url, bareUrl } = JSON.parse(await next()) as { url: string; bareUrl: string };
  return {
    url,
    bareUrl,
    setBareAnswer: async (bytes: Buffer) => {
      child.stdin!.write(`${bytes.toString('base64')}\n`);
      await next();
    },
    cpuMs: async () => {
      child.stdin!.write('cpu\n');
      return Number(await next());
    },
    close: () => new Promise<void>((resolve) => child.once('exit', () => resolve()).stdin!.end()),
  };
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'klein-bench-'));
  const server = await startServers(dataDir);
  const db = openDatabase({ dataDir });
  const { key } = await createKey(db, { creditsMicro: 1e12, rpm: 1_000_000, concurrency: 1000 });
  await db.destroy();
  for (;;) {
    const h = (await (await fetch(`${server.url}/health`)).json()) as { status: string };
    if (h.status === 'READY') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const post = async (url: string, body: object): Promise<{ ms: number; bytes: Buffer }> => {
    const t0 = performance.now();
    const r = await fetch(`${url}/v1/flux-2-klein-4b`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify(body),
    });
    const bytes = Buffer.from(await r.arrayBuffer());
    if (r.status !== 200) throw new Error(`status ${r.status}`);
    return { ms: performance.now() - t0, bytes };
  };
  const call = async (body: object) => (await post(server.url, body)).ms;
  const callBare = async (body: object) => (await post(server.bareUrl, body)).ms;
  const small = { prompt: 'benchmark', width: 64, height: 64, steps: 1, cfg: 1 };
  for (let i = 0; i < WARMUP; i++) await call(small); // warm-up

  // The baseline: a bare Fastify route in the servers' process that takes the same request
  // and answers the same bytes, so the difference is what the gateway itself adds.
  await server.setBareAnswer((await post(server.url, small)).bytes);
  for (let i = 0; i < WARMUP; i++) await callBare(small); // warm-up

  // 1. Sequential latency, one client, alternating with the bare route so both see the same load.
  const lat: number[] = [];
  const latBare: number[] = [];
  for (let i = 0; i < N; i++) {
    lat.push(await call(small));
    latBare.push(await callBare(small));
  }

  // 1b. The servers' CPU time per request, each route on its own (all threads of the
  // servers' process; the engine's process apart): less sensitive than latency to what else
  // the machine runs.
  const cpuPer = async (f: () => Promise<number>) => {
    const before = await server.cpuMs();
    for (let i = 0; i < N; i++) await f();
    return ((await server.cpuMs()) - before) / N;
  };
  const cpuSync = await cpuPer(() => call(small));
  const cpuBare = await cpuPer(() => callBare(small));

  // 2. Encode of a 1024×1024 PNG, from the server's own stage histogram.
  const before = await encodeStats(server.url);
  for (let i = 0; i < 20; i++) await call({ prompt: 'benchmark', steps: 1, cfg: 1 });
  const after = await encodeStats(server.url);
  const encodeMs = ((after.sum - before.sum) / (after.count - before.count)) * 1000;

  // 3. Throughput with C concurrent clients.
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (done < N) {
        done++;
        await call(small);
      }
    }),
  );
  const rps = N / ((performance.now() - t0) / 1000);

  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
  const result = {
    device: `${cpus()[0]?.model ?? 'cpu'} (${cpus().length} cores)`,
    node: process.version,
    commit: execSync('git rev-parse --short HEAD').toString().trim(),
    command: `node --import tsx bench/gateway.ts --requests ${N} --concurrency ${C} --warmup ${WARMUP}`,
    engine: 'simulated (0 ms per evaluation)',
    sync_64px: { requests: N, p50_ms: round(pct(lat, 50)), p99_ms: round(pct(lat, 99)), mean_ms: round(lat.reduce((a, b) => a + b, 0) / lat.length) },
    bare_fastify_same_bytes: { requests: N, p50_ms: round(pct(latBare, 50)), p99_ms: round(pct(latBare, 99)) },
    // What the gateway adds over a bare route answering the same bytes, at the median.
    gateway_own_p50_ms: round(pct(lat, 50) - pct(latBare, 50)),
    server_cpu_ms_per_request: { sync_64px: round(cpuSync), bare_fastify_same_bytes: round(cpuBare) },
    png_encode_1024px_ms: round(encodeMs),
    throughput: { clients: C, requests: N, requests_per_second: round(rps) },
  };
  const json = `${JSON.stringify(result, null, 2)}\n`;
  process.stdout.write(json);
  if (values.out) {
    mkdirSync(join(values.out, '..'), { recursive: true });
    writeFileSync(values.out, json);
  }
}

async function encodeStats(url: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const sum = Number(/klein_stage_seconds_sum\{stage="encode"\} ([\d.e+-]+)/.exec(text)?.[1] ?? 0);
  const count = Number(/klein_stage_seconds_count\{stage="encode"\} (\d+)/.exec(text)?.[1] ?? 0);
  return { sum, count };
}

const round = (x: number) => Math.round(x * 100) / 100;

await main();
