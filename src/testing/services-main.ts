/**
 * Starts the test run's PostgreSQL and Redis (see services.ts), prints one JSON line with
 * their URLs, and stops both when its stdin closes (scripts/run-ts-tests.mjs holds it).
 */
import { startPostgres, startRedis } from './services.js';

const [pgSvc, redisSvc] = await Promise.all([startPostgres(), startRedis()]);
process.stdout.write(`${JSON.stringify({ databaseUrl: pgSvc.url, redisUrl: redisSvc.url })}\n`);
process.stdin.resume();
process.stdin.once('end', () => {
  void Promise.all([pgSvc.stop(), redisSvc.stop()]).finally(() => process.exit(0));
});
