/**
 * The disk cache of LoRA files (issue 18 point 3). Downloads live under one directory as
 * `<sha256>.safetensors`, named by their content, so two URLs of one file share a copy and
 * the engine can key its loaded adapters by the same hash. `index.json` beside them maps
 * each source (URL, hub repo+revision+file) to its hash and records when each file was
 * last used; the least recently used files are deleted once the total passes the cap.
 *
 * Guarantees:
 *   - one download per source at a time: concurrent `get`s of a source share it
 *     (single-flight); a caller that gives up stops waiting, and the download is aborted
 *     only when every caller has given up;
 *   - a file appears under its hash only whole and checked: the body streams to a temp
 *     file while it is hashed, the header of the whole file is checked again (its size
 *     must be the one the header describes), and only then is it renamed into place; a
 *     failed, oversized or aborted download leaves nothing behind;
 *   - a file a batch holds (`get` with `hold`, from the call until its `release`) is never
 *     evicted: the cap may be passed meanwhile, and the eviction runs again at the release.
 *
 * Files in KLEIN_LORA_DIR are hashed where they are, not copied: they are on local disk
 * already and belong to the operator, so a copy would double their disk use and could be
 * evicted while the original stays; the hash is kept per (name, size, mtime, inode) and
 * computed again when the file changes. They do not count towards the cap.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Cidr } from '../net/networks.js';
import type { Lookup } from '../net/safe-fetch.js';
import { Deadline, openGuarded, statusError } from './fetch.js';
import { readFileHeader, type SafetensorsHeader } from './safetensors-header.js';
import { loraError, sourceHeaders, sourceKey, type LoraSource } from './source.js';

export interface LoraCacheOptions {
  /** Where downloads live, e.g. `<dataDir>/loras`; created if missing. */
  dir: string;
  /** KLEIN_LORA_CACHE_BYTES: the total size of downloads kept. */
  maxCacheBytes: number;
  /** KLEIN_ALLOW_NETWORKS, parsed. */
  allow: Cidr[];
  /** The longest one download may take. */
  downloadTimeoutMs: number;
  hfToken?: string | undefined;
  lookup?: Lookup | undefined;
  /** For metrics: called once per event (the caller counts them in prom-client). */
  onEvent?: ((event: LoraCacheEvent) => void) | undefined;
  now?: (() => number) | undefined;
}

export type LoraCacheEvent =
  | { type: 'hit'; source: string }
  | { type: 'download'; source: string; bytes: number; seconds: number }
  | { type: 'download_failed'; source: string; reason: string }
  | { type: 'hashed'; source: string; bytes: number; seconds: number }
  | { type: 'evicted'; key: string; bytes: number };

export interface CachedLora {
  /** The content's SHA-256, hex. */
  key: string;
  /** The file to load: in the cache, or in KLEIN_LORA_DIR. */
  path: string;
  bytes: number;
  /** True when this call waited for a download (its own or one it joined). */
  downloaded: boolean;
  /** How long this call waited (download or hashing); 0 for a hit. */
  seconds: number;
  header: SafetensorsHeader;
  /** Ends the hold taken with `hold: true` (once is enough); does nothing otherwise. */
  release(): Promise<void>;
}

export interface GetOptions {
  /** KLEIN_LORA_MAX_BYTES. */
  maxBytes: number;
  signal?: AbortSignal | undefined;
  /**
   * Keep the file from eviction from this call until `release`: a batch holds its files
   * until the engine has read them, so another batch's download cannot evict one between.
   */
  hold?: boolean | undefined;
}

interface IndexFile {
  version: 1;
  /** sourceKey → sha256. */
  sources: Record<string, string>;
  /** sha256 → size and last use (ms since the epoch). */
  files: Record<string, { bytes: number; lastUsed: number }>;
}

interface Flight {
  promise: Promise<Omit<CachedLora, 'downloaded' | 'seconds' | 'release'> & { downloaded: boolean }>;
  waiters: number;
  abort: AbortController;
}

const SHA = /^[0-9a-f]{64}$/;

export class LoraCache {
  private index: IndexFile = { version: 1, sources: {}, files: {} };
  private readonly flights = new Map<string, Flight>();
  /** KLEIN_LORA_DIR files: name → identity and hash. */
  private readonly hashed = new Map<string, { identity: string; key: string; header: SafetensorsHeader }>();
  private saving: Promise<void> = Promise.resolve();
  /** Files in use by a batch, with how many holds each has. */
  private readonly held = new Map<string, number>();
  /** Sources whose `get` with `hold` is under way: their file is held before it is known. */
  private readonly holding = new Map<string, number>();
  /** Evictions run one at a time, so two never count or delete the same file. */
  private evicting: Promise<void> = Promise.resolve();

  private constructor(private readonly options: LoraCacheOptions) {}

  /**
   * Opens (or creates) the cache: reads the index, forgets entries whose file is gone,
   * adopts `<sha256>.safetensors` files the index lacks, deletes leftover temp files.
   */
  static async open(options: LoraCacheOptions): Promise<LoraCache> {
    const cache = new LoraCache(options);
    await mkdir(options.dir, { recursive: true });
    try {
      const parsed = JSON.parse(await readFile(cache.indexPath(), 'utf8')) as IndexFile;
      if (parsed.version === 1 && parsed.sources && parsed.files) cache.index = parsed;
    } catch {
      // No index yet, or an unreadable one: the files on disk are adopted below.
    }
    const names = await readdir(options.dir);
    for (const name of names) if (name.endsWith('.part') || name.endsWith('.tmp')) await rm(join(options.dir, name), { force: true });
    const present = new Set(names.filter((n) => n.endsWith('.safetensors')).map((n) => n.slice(0, -'.safetensors'.length)).filter((k) => SHA.test(k)));
    for (const key of Object.keys(cache.index.files)) if (!present.has(key)) delete cache.index.files[key];
    for (const key of present) {
      if (!cache.index.files[key]) {
        const s = await stat(cache.filePath(key));
        cache.index.files[key] = { bytes: s.size, lastUsed: s.mtimeMs };
      }
    }
    for (const [src, key] of Object.entries(cache.index.sources)) if (!cache.index.files[key]) delete cache.index.sources[src];
    await cache.save();
    return cache;
  }

  /** Total bytes of cached downloads. */
  get totalBytes(): number {
    return Object.values(this.index.files).reduce((a, f) => a + f.bytes, 0);
  }

  /** Cached hashes, least recently used first (what eviction would take next). */
  lruOrder(): string[] {
    return Object.entries(this.index.files)
      .sort((a, b) => a[1].lastUsed - b[1].lastUsed)
      .map(([key]) => key);
  }

  /** The file of a source: from the cache, downloaded, or hashed in KLEIN_LORA_DIR. */
  async get(source: LoraSource, options: GetOptions): Promise<CachedLora> {
    const skey = sourceKey(source);
    if (!options.hold) return { ...(await this.find(source, skey, options)), release: async () => undefined };
    // Held from the start: the source's file is protected as soon as the index maps it (a hit
    // at once, a download when it lands), then by its hash until the release.
    count(this.holding, skey, +1);
    try {
      const file = await this.find(source, skey, options);
      return { ...file, release: this.hold(file.key) };
    } finally {
      count(this.holding, skey, -1);
    }
  }

  private async find(source: LoraSource, skey: string, options: GetOptions): Promise<Omit<CachedLora, 'release'>> {
    const started = performance.now();
    options.signal?.throwIfAborted();
    if (source.kind !== 'dir') {
      const hit = await this.lookupHit(skey, source.field, options.maxBytes);
      if (hit) {
        this.emit({ type: 'hit', source: skey });
        return { ...hit, downloaded: false, seconds: 0 };
      }
    }
    let flight = this.flights.get(skey);
    if (!flight) {
      const abort = new AbortController();
      const promise = (source.kind === 'dir' ? this.hashInPlace(source, options.maxBytes) : this.download(source, options.maxBytes, abort.signal)).finally(() => {
        this.flights.delete(skey);
      });
      flight = { promise, waiters: 0, abort };
      this.flights.set(skey, flight);
      // A flight nobody waits for any more still settles; its rejection is not unhandled.
      promise.catch(() => undefined);
    }
    const result = await this.wait(flight, options.signal);
    return { ...result, seconds: (performance.now() - started) / 1000 };
  }

  /** Keeps a file from eviction until the returned release is called (once; more do nothing). */
  private hold(key: string): () => Promise<void> {
    count(this.held, key, +1);
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      count(this.held, key, -1);
      if (this.totalBytes > this.options.maxCacheBytes) await this.evict(null);
    };
  }

  /** Whether a batch holds the file, or a held `get` under way is for one of its sources. */
  private isHeld(key: string): boolean {
    if (this.held.has(key)) return true;
    for (const skey of this.holding.keys()) if (this.index.sources[skey] === key) return true;
    return false;
  }

  /** Waits for a shared flight; leaving it aborts the flight only when it was the last waiter. */
  private async wait(flight: Flight, signal: AbortSignal | undefined): Promise<Omit<CachedLora, 'seconds' | 'release'>> {
    signal?.throwIfAborted();
    flight.waiters++;
    let onAbort: (() => void) | undefined;
    try {
      if (!signal) return await flight.promise;
      const gone = new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
      });
      return await Promise.race([flight.promise, gone]);
    } finally {
      if (onAbort) signal!.removeEventListener('abort', onAbort);
      flight.waiters--;
      if (flight.waiters === 0 && signal?.aborted) flight.abort.abort(signal.reason);
    }
  }

  private async lookupHit(skey: string, field: string, maxBytes: number): Promise<Omit<CachedLora, 'downloaded' | 'seconds' | 'release'> | null> {
    const key = this.index.sources[skey];
    const entry = key ? this.index.files[key] : undefined;
    if (!key || !entry) return null;
    let header: SafetensorsHeader;
    try {
      header = await readFileHeader(this.filePath(key), { field, maxBytes });
    } catch {
      // Deleted or damaged behind our back: forget it and fetch it again.
      delete this.index.sources[skey];
      delete this.index.files[key];
      await this.save();
      return null;
    }
    entry.lastUsed = this.now();
    await this.save();
    return { key, path: this.filePath(key), bytes: entry.bytes, header };
  }

  private async download(source: Exclude<LoraSource, { kind: 'dir' }>, maxBytes: number, signal: AbortSignal): Promise<Omit<CachedLora, 'seconds' | 'release'>> {
    const skey = sourceKey(source);
    const field = source.field;
    const started = performance.now();
    const temp = join(this.options.dir, `${randomUUID()}.part`);
    const deadline = new Deadline(this.options.downloadTimeoutMs, signal);
    try {
      const res = await openGuarded(
        source.url,
        { allow: this.options.allow, field, lookup: this.options.lookup, headers: sourceHeaders(source, this.options.hfToken) },
        deadline,
      );
      const hash = createHash('sha256');
      let bytes = 0;
      try {
        if (res.status !== 200) throw statusError(res, field);
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > maxBytes) throw loraError(field, `is ${declared} bytes; this server takes LoRA files up to ${maxBytes} bytes`);
        const counter = new Transform({
          transform(chunk: Buffer, _enc, done) {
            bytes += chunk.length;
            if (bytes > maxBytes) return done(loraError(field, `is larger than ${maxBytes} bytes, the limit for LoRA files`));
            hash.update(chunk);
            done(null, chunk);
          },
        });
        await pipeline(res.body, counter, createWriteStream(temp), { signal: deadline.signal }).catch((err: unknown) => {
          throw deadline.failure(field, 'the download', err);
        });
      } finally {
        await res.close();
      }
      const header = await readFileHeader(temp, { field, maxBytes });
      const key = hash.digest('hex');
      const path = this.filePath(key);
      await rename(temp, path);
      const seconds = (performance.now() - started) / 1000;
      this.index.files[key] = { bytes, lastUsed: this.now() };
      this.index.sources[skey] = key;
      await this.evict(key);
      this.emit({ type: 'download', source: skey, bytes, seconds });
      return { key, path, bytes, header, downloaded: true };
    } catch (err) {
      await rm(temp, { force: true });
      this.emit({ type: 'download_failed', source: skey, reason: err instanceof Error ? err.message : String(err) });
      throw err;
    }
  }

  private async hashInPlace(source: Extract<LoraSource, { kind: 'dir' }>, maxBytes: number): Promise<Omit<CachedLora, 'seconds' | 'release'>> {
    const started = performance.now();
    const header = await readFileHeader(source.file, { field: source.field, maxBytes });
    const s = await stat(source.file);
    const identity = `${s.size}:${s.mtimeMs}:${s.ino}`;
    const known = this.hashed.get(source.name);
    if (known && known.identity === identity) return { key: known.key, path: source.file, bytes: s.size, header, downloaded: false };
    const hash = createHash('sha256');
    await pipeline(createReadStream(source.file), hash);
    const key = hash.digest('hex');
    this.hashed.set(source.name, { identity, key, header });
    this.emit({ type: 'hashed', source: sourceKey(source), bytes: s.size, seconds: (performance.now() - started) / 1000 });
    return { key, path: source.file, bytes: s.size, header, downloaded: false };
  }

  /**
   * Deletes least recently used downloads until the total fits; never the one just added
   * (`keep`) nor one a batch holds.
   */
  private evict(keep: string | null): Promise<void> {
    const run = this.evicting.then(async () => {
      for (const key of this.lruOrder()) {
        if (this.totalBytes <= this.options.maxCacheBytes) break;
        const entry = this.index.files[key];
        if (key === keep || !entry || this.isHeld(key)) continue;
        delete this.index.files[key];
        for (const [src, k] of Object.entries(this.index.sources)) if (k === key) delete this.index.sources[src];
        await rm(this.filePath(key), { force: true });
        this.emit({ type: 'evicted', key, bytes: entry.bytes });
      }
      await this.save();
    });
    this.evicting = run.catch(() => undefined);
    return run;
  }

  private filePath(key: string): string {
    return join(this.options.dir, `${key}.safetensors`);
  }

  private indexPath(): string {
    return join(this.options.dir, 'index.json');
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Writes the index atomically (temp + rename), one write at a time. */
  private save(): Promise<void> {
    const body = JSON.stringify(this.index);
    this.saving = this.saving.then(async () => {
      const tmp = `${this.indexPath()}.${randomUUID()}.tmp`;
      await writeFile(tmp, body);
      await rename(tmp, this.indexPath());
    });
    return this.saving;
  }

  private emit(event: LoraCacheEvent): void {
    this.options.onEvent?.(event);
  }
}

/** Adds `by` to a count in a map, deleting it at zero. */
function count(map: Map<string, number>, key: string, by: 1 | -1): void {
  const n = (map.get(key) ?? 0) + by;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}
