/**
 * Gateway benchmark: what the TypeScript path adds to a synchronous request, measured
 * against the simulated engine (`KLEIN_MODEL=simulated`: protocol-exact, no model, zero
 * GPU time), over real HTTP on loopback.
 *
 *   node --import tsx bench/gateway.ts [--requests 300] [--concurrency 8] [--out FILE]
 *
 * Reports: latency p50/p99 of a 64×64 request (auth, validation, pricing, ledger, queue,
 * engine round trip, PNG encode, response), the PNG encode time of a 1024×1024 image
 * separately (from the server's stage histogram), and requests per second with several
 * clients. One engine serialises generation, so req/s is the gateway + engine-loop ceiling.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/compose/server.js';
import { openDatabase } from '../src/store/db.js';
import { createKey } from '../src/accounts/keys.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
    out: { type: 'string' },
  },
});
const N = Number(values.requests);
const C = Number(values.concurrency);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'klein-bench-'));
  const env = { ...process.env, HOST: '127.0.0.1', PORT: '0', KLEIN_DATA_DIR: dataDir, KLEIN_MODEL: 'simulated', KLEIN_LOG_LEVEL: 'error' };
  const server = await startServer(loadConfig(env), env);
  const db = openDatabase({ dataDir });
  const { key } = await createKey(db, { creditsMicro: 1e12, rpm: 1_000_000, concurrency: 1000 });
  await db.destroy();
  for (;;) {
    const h = (await (await fetch(`${server.url}/health`)).json()) as { status: string };
    if (h.status === 'READY') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const call = async (body: object): Promise<number> => {
    const t0 = performance.now();
    const r = await fetch(`${server.url}/v1/flux-2-klein-4b`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify(body),
    });
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`status ${r.status}`);
    return performance.now() - t0;
  };
  const small = { prompt: 'benchmark', width: 64, height: 64, steps: 1, cfg: 1 };
  for (let i = 0; i < 30; i++) await call(small); // warm-up

  // 1. Sequential latency, one client.
  const lat: number[] = [];
  for (let i = 0; i < N; i++) lat.push(await call(small));

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
    command: `node --import tsx bench/gateway.ts --requests ${N} --concurrency ${C}`,
    engine: 'simulated (0 ms per evaluation)',
    sync_64px: { requests: N, p50_ms: round(pct(lat, 50)), p99_ms: round(pct(lat, 99)), mean_ms: round(lat.reduce((a, b) => a + b, 0) / lat.length) },
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
