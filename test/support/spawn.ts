/** Test helper: runs several contender processes (contender.ts) and starts them together. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CONTENDER = fileURLToPath(new URL('./contender.ts', import.meta.url));

/** Starts one process per argument list, releases them at once, returns each one's JSON answer. */
export async function runContenders<T>(argLists: string[][], onAllReady?: () => Promise<void>): Promise<T[]> {
  const children = argLists.map((args) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CONTENDER, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const ready = new Promise<void>((resolve, reject) => {
      const check = () => (out.includes('ready\n') ? resolve() : undefined);
      child.stdout.on('data', check);
      child.on('exit', (code) => reject(new Error(`contender exited (${code}) before ready: ${err}`)));
    });
    const done = new Promise<T>((resolve, reject) => {
      child.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`contender exited with ${code}: ${err}`));
        const last = out.trim().split('\n').pop() ?? '';
        resolve(JSON.parse(last) as T);
      });
    });
    done.catch(() => undefined);
    return { child, ready, done };
  });
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.child.stdin.write('go\n');
  if (onAllReady) await onAllReady();
  return Promise.all(children.map((c) => c.done));
}
