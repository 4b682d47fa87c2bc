/**
 * Starts the test run's PostgreSQL (see services.ts), prints one JSON line with its URL,
 * and stops it when its stdin closes (scripts/run-ts-tests.mjs holds it).
 */
import { startPostgres } from './services.js';

const pgSvc = await startPostgres();
process.stdout.write(`${JSON.stringify({ databaseUrl: pgSvc.url })}\n`);
process.stdin.resume();
process.stdin.once('end', () => {
  void pgSvc.stop().finally(() => process.exit(0));
});
