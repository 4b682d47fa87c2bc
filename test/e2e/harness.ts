/**
 * End-to-end harness: the real server (startServer, listening on a loopback port), the
 * real engine process on the `tiny` model, real HTTP. Keys are made with the real
 * `klein` command.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { startServer, type RunningServer } from '../../src/compose/server.js';

export interface TestServer {
  url: string;
  dataDir: string;
  server: RunningServer;
  env: NodeJS.ProcessEnv;
  createKey(opts?: { credits?: string; rpm?: number; concurrency?: number; admin?: boolean; models?: string[] }): KeyInfo;
  close(): Promise<void>;
}

export interface KeyInfo {
  key: string;
  account_id: string;
  key_id: string;
  [k: string]: unknown;
}

const root = new URL('../..', import.meta.url).pathname;

/** Runs the real CLI (`klein …`) against a data directory; returns stdout. */
export function klein(args: string[], env: NodeJS.ProcessEnv): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
    env,
    encoding: 'utf8',
    cwd: root,
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

export async function startTestServer(extraEnv: Record<string, string> = {}, opts: { keepDataDir?: boolean } = {}): Promise<TestServer> {
  const dataDir = extraEnv.KLEIN_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'klein-e2e-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOST: '127.0.0.1',
    PORT: '0',
    KLEIN_DATA_DIR: dataDir,
    KLEIN_MODEL: 'tiny',
    KLEIN_LOG_LEVEL: process.env.KLEIN_TEST_LOG_LEVEL ?? 'warn',
    ...extraEnv,
  };
  const server = await startServer(loadConfig(env), env);
  await waitReady(server.url, 180_000);
  return {
    url: server.url,
    dataDir,
    server,
    env,
    createKey(opts = {}) {
      const args = ['keys', 'create', '--credits', opts.credits ?? '1000', '--json'];
      if (opts.rpm !== undefined) args.push('--rpm', String(opts.rpm));
      if (opts.concurrency !== undefined) args.push('--concurrency', String(opts.concurrency));
      if (opts.admin) args.push('--admin');
      if (opts.models) args.push('--models', opts.models.join(','));
      const r = klein(args, env);
      if (r.status !== 0) throw new Error(`keys create failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as KeyInfo;
    },
    async close() {
      await server.close();
      if (!opts.keepDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Waits for READY; `throughRestarts` keeps waiting while a crashed engine is restarted. */
export async function waitReady(url: string, timeoutMs: number, throughRestarts = false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await fetch(`${url}/health`).then((x) => x.json() as Promise<{ status: string; reason?: string }>);
    if (r.status === 'READY') return;
    if (r.status === 'UNHEALTHY' && !throughRestarts) throw new Error(`engine unhealthy: ${r.reason}`);
    if (Date.now() > deadline) throw new Error(`server not ready after ${timeoutMs} ms (${r.status})`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** POST a v1 generation; small, fast defaults for tests unless overridden. */
export async function generate(
  url: string,
  key: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}/v1/flux-2-klein-4b`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key, ...headers },
    body: JSON.stringify(body),
  });
}

export const FAST = { steps: 2, cfg: 1, width: 64, height: 64 } as const;
