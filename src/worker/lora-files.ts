/**
 * A worker's LoRA files (contract §7): each adapter of a job resolved to a local file through
 * this process's disk cache (loras/cache.ts: by content hash, LRU by bytes, one download per
 * file however many jobs ask), then handed to the engine as its sha256, path and scale. Each
 * worker keeps its own cache; the first download of a file is waiting time of the jobs that
 * need it (before their run is timed, so it is not billed as generation) and is counted in
 * /metrics (klein_lora_cache_events_total, klein_lora_download_seconds).
 */
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { LoraSpec } from '../contract/types.js';
import type { Metrics } from '../metrics/metrics.js';
import { parseAllowNetworks } from '../net/networks.js';
import { LoraCache } from '../loras/cache.js';
import { parseLoraSource } from '../loras/source.js';

/** What the engine is sent for one adapter. */
export interface EngineLora {
  key: string;
  path: string;
  scale: number;
}

/** A batch's adapter files, and the release of their hold on the cache. */
export interface ResolvedLoras {
  files: EngineLora[];
  release(): Promise<void>;
}

export class LoraFiles {
  private readonly cache: Promise<LoraCache>;

  constructor(
    private readonly config: Pick<Config, 'dataDir' | 'loraDir' | 'loraMaxBytes' | 'loraCacheBytes' | 'loraDownloadTimeoutMs' | 'hfToken' | 'allowNetworks'>,
    metrics: Metrics,
  ) {
    this.cache = LoraCache.open({
      dir: join(config.dataDir, 'loras'),
      maxCacheBytes: config.loraCacheBytes,
      allow: parseAllowNetworks(config.allowNetworks),
      downloadTimeoutMs: config.loraDownloadTimeoutMs,
      hfToken: config.hfToken ?? undefined,
      onEvent: (e) => {
        metrics.loraCacheEvents.inc({ event: e.type });
        if (e.type === 'download') {
          metrics.loraDownloadSeconds.observe(e.seconds);
          metrics.loraDownloadBytes.inc(e.bytes);
        }
      },
    });
    // Opening fails only on an unusable data directory; the first job that needs it says so.
    this.cache.catch(() => undefined);
  }

  /**
   * The files of a batch's adapters, in order (downloading what is not cached yet), held in
   * the cache until `release` — once the engine has read them — so that another batch's
   * download cannot evict one in between.
   */
  async resolve(specs: readonly LoraSpec[], signal?: AbortSignal): Promise<ResolvedLoras> {
    if (specs.length === 0) return { files: [], release: async () => undefined };
    const cache = await this.cache;
    const releases: Array<() => Promise<void>> = [];
    const release = async () => {
      for (const r of releases.splice(0)) await r();
    };
    const settled = await Promise.allSettled(
      specs.map(async (spec, i) => {
        const source = parseLoraSource(spec, i, this.config.loraDir ? { loraDir: this.config.loraDir } : {});
        const file = await cache.get(source, { maxBytes: this.config.loraMaxBytes, signal, hold: true });
        releases.push(file.release);
        return { key: file.key, path: file.path, scale: spec.scale };
      }),
    );
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) {
      await release();
      throw failed.reason;
    }
    return { files: settled.map((r) => (r as PromiseFulfilledResult<EngineLora>).value), release };
  }
}
