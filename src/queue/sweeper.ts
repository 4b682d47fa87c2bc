/**
 * The periodic sweep of a gateway:
 * - retention: finished requests and their outputs expire after KLEIN_RETENTION (default
 *   24 h). Expired rows are deleted, then their stored objects; routes already answer 404
 *   for an expired id before the sweep runs;
 * - repair (repair.ts): ends a crash left open are closed, held charges whose answer was
 *   never delivered are released. It runs before retention, so nothing open is deleted.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { expireOlderThan } from '../store/requests.js';
import type { Database } from '../store/schema.js';
import type { OutputStorage } from '../storage/types.js';
import { repairAndLog } from './repair.js';

export class Sweeper {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: { db: Kysely<Database>; storage: OutputStorage; logger: Logger; intervalMs: number }) {}

  start(): void {
    this.timer = setInterval(() => void this.sweep(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async sweep(now = Date.now()): Promise<number> {
    try {
      await repairAndLog(this.options.db, this.options.storage, this.options.logger, { now });
      const { ids, outputKeys } = await expireOlderThan(this.options.db, now);
      for (const key of outputKeys) await this.options.storage.delete(key);
      if (ids.length > 0) {
        await this.options.db.deleteFrom('webhook_attempts').where('delivery_id', 'in', this.options.db.selectFrom('webhook_deliveries').select('id').where('request_id', 'in', ids)).execute();
        await this.options.db.deleteFrom('webhook_deliveries').where('request_id', 'in', ids).execute();
        this.options.logger.info({ expired: ids.length }, 'expired requests removed');
      }
      return ids.length;
    } catch (err) {
      this.options.logger.error({ err }, 'sweep failed');
      return 0;
    }
  }
}
