/**
 * Configuration: read from the environment once, validated, typed. A bad value stops
 * start-up with one message per bad variable (`ConfigError.problems`), naming it.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FAULT_POINTS } from './faults.js';
import { DEFAULT_MODEL_SLUG, ServedModels } from './contract/models.js';
import { parseModelPricing, PricingConfigError, type PricingConfig } from './billing/pricing.js';
import { parseServedModels } from './served-models.js';

/** Contract §8: OpenAI model names that run the first served model when no KLEIN_OPENAI_MODEL_ALIASES is set. */
export function defaultOpenAiModelAliases(slug: string): string {
  return `gpt-image-1=${slug},dall-e-3=${slug},dall-e-2=${slug}`;
}

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** KLEIN_MODEL: `tiny`, a local diffusers-layout directory, or a hub id; the default KLEIN_MODELS' one model. */
  model: string;
  /** KLEIN_MODELS: the served models, each by its slug, with its variant and defaults (contract §6). */
  models: ServedModels;
  /** The price function of each served model, by slug (KLEIN_PRICE_…, billing/pricing.ts). */
  pricing: ReadonlyMap<string, PricingConfig>;
  /** Python interpreter of the engine's environment. */
  enginePython: string;
  /** CIDRs that the SSRF guard lets through (KLEIN_ALLOW_NETWORKS). */
  allowNetworks: string;
  logLevel: string;
  /** Seconds a synchronous call may take before it is cancelled with 504. */
  syncTimeoutS: number;
  /** Largest request body in bytes (413 above it). */
  bodyLimitBytes: number;
  imageMaxBytes: number;
  imageMaxPixels: number;
  fetchTimeoutMs: number;
  /** Limits for keys created without their own. */
  defaultRpm: number;
  defaultConcurrency: number;
  /** Write the generation parameters into the image's metadata. */
  imageMetadata: boolean;
  /** How many times a job may be started before it is failed (engine crashes). */
  maxAttempts: number;
  /** Seconds an engine may take from spawn to `ready` (weights read or downloaded, kernels compiled). */
  engineStartTimeoutS: number;
  /** Seconds a client is told to wait (Retry-After) while the engine starts. */
  startingRetryAfterS: number;
  /** Base URL put in status/response/cancel/events URLs and webhooks. */
  publicUrl: string;
  /** How long request records and outputs are kept (ms). */
  retentionMs: number;
  webhookAttempts: number;
  webhookBackoffMs: number;
  webhookTimeoutMs: number;
  /** PostgreSQL (DATABASE_URL, postgres://…) for accounts, ledger and requests; null: SQLite in the data directory. */
  databaseUrl: string | null;
  /** Redis (REDIS_URL) for the queue, limits, progress and cancel; null: the embedded in-process queue. */
  redisUrl: string | null;
  /** Prefix of every Redis key, so deployments can share a Redis. */
  redisPrefix: string;
  /** How long a silent worker keeps its job before another may take it (ms). */
  jobLockMs: number;
  /** A worker leaves after this long without a job (ms; 0 = never): scale to zero. */
  idleExitMs: number;
  /** How often gateways put back jobs that Redis lost (ms). */
  reconcileMs: number;
  /** Port of a worker's own /metrics and /health (0: none). */
  workerMetricsPort: number;
  /** Time a client has to send a whole request, headers and body (ms): 408 and closed after it. */
  requestTimeoutMs: number;
  /** Time a client has to send the request headers (ms). */
  headersTimeoutMs: number;
  /** Open connections the server accepts at once; more are closed at once (0: no cap). */
  maxConnections: number;
  /** Crash points armed for tests (KLEIN_FAULTS; see faults.ts). Empty in production. */
  faults: string[];
  /** KLEIN_LINK_SECRET: secrets of key-less output links, first signs, all verify; empty: one kept in the data directory. */
  linkSecrets: string[];
  /** KLEIN_LINK_TTL: how long a key-less output link works (seconds). */
  linkTtlS: number;
  /** KLEIN_EVENTS_LINK_TTL: how long the token in an `events_url` lets a key-less client (a browser's EventSource) connect (seconds). */
  eventsLinkTtlS: number;
  /** S3-compatible output storage; null means local disk under the data directory. */
  s3: { bucket: string; endpoint?: string; region: string; prefix: string; forcePathStyle: boolean } | null;
  /** KLEIN_LORA_DIR: a folder of .safetensors LoRAs requests may name by file name; null: none. */
  loraDir: string | null;
  /** KLEIN_LORA_MAX_BYTES: the largest LoRA file taken. */
  loraMaxBytes: number;
  /** KLEIN_LORA_CACHE_BYTES: downloaded LoRAs kept on disk (LRU by bytes), per process. */
  loraCacheBytes: number;
  /** KLEIN_LORA_HEADER_TIMEOUT_MS: reading a LoRA's header at admission; KLEIN_LORA_DOWNLOAD_TIMEOUT_MS: its download. */
  loraHeaderTimeoutMs: number;
  loraDownloadTimeoutMs: number;
  /** HF_TOKEN: sent to the Hugging Face hub for LoRAs named by repo id (and read by the engine for the model). */
  hfToken: string | null;
  /** KLEIN_OPENAI_MODEL_ALIASES: `model` names the OpenAI routes take for a served slug (alias → slug). */
  openAiModelAliases: ReadonlyMap<string, string>;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  str(name: string, dflt: string): string {
    const v = this.env[name];
    return v === undefined || v === '' ? dflt : v;
  }

  int(name: string, dflt: number, min: number, max: number): number {
    const raw = this.env[name];
    if (raw === undefined || raw === '') return dflt;
    if (!/^-?\d+$/.test(raw.trim())) {
      this.problems.push(`${name}: must be an integer from ${min} to ${max}, got "${raw}"`);
      return dflt;
    }
    const n = Number(raw.trim());
    if (n < min || n > max) {
      this.problems.push(`${name}: must be an integer from ${min} to ${max}, got ${n}`);
      return dflt;
    }
    return n;
  }

  num(name: string, dflt: number, min: number, max: number): number {
    const raw = this.env[name];
    if (raw === undefined || raw === '') return dflt;
    const n = Number(raw.trim());
    if (!Number.isFinite(n) || raw.trim() === '' || n < min || n > max) {
      this.problems.push(`${name}: must be a number from ${min} to ${max}, got "${raw}"`);
      return dflt;
    }
    return n;
  }

  bool(name: string, dflt: boolean): boolean {
    const raw = this.env[name];
    if (raw === undefined || raw === '') return dflt;
    const v = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    this.problems.push(`${name}: must be true or false, got "${raw}"`);
    return dflt;
  }

  oneOf<T extends string>(name: string, dflt: T, allowed: readonly T[]): T {
    const raw = this.env[name];
    if (raw === undefined || raw === '') return dflt;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    this.problems.push(`${name}: must be one of ${allowed.join(', ')}, got "${raw}"`);
    return dflt;
  }

  /** A duration: plain seconds, or a number with s, m, h or d (`24h`, `90m`). */
  duration(name: string, dfltMs: number): number {
    const raw = this.env[name];
    if (raw === undefined || raw === '') return dfltMs;
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(raw);
    if (!m) {
      this.problems.push(`${name}: must be a duration such as 3600, 90m, 24h or 7d, got "${raw}"`);
      return dfltMs;
    }
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'];
    const ms = Number(m[1]) * unit;
    if (ms < 1000) {
      this.problems.push(`${name}: must be at least one second, got "${raw}"`);
      return dfltMs;
    }
    return ms;
  }

}

/** A URL with its password hidden, for error messages. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
}

/** The repository root: the nearest folder above this module with a package.json
 * (src/ under tsx, dist/src/ after tsc). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || dir.endsWith('/dist')) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the project root');
    dir = up;
  }
  return dir;
}

export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);
  const model = r.str('KLEIN_MODEL', 'black-forest-labs/FLUX.2-klein-4B');
  const cfg: Config = {
    host: r.str('HOST', '127.0.0.1'),
    port: r.int('PORT', 8080, 0, 65535),
    dataDir: resolve(r.str('KLEIN_DATA_DIR', './data')),
    model,
    models: parseServedModels(r.str('KLEIN_MODELS', `${DEFAULT_MODEL_SLUG}=${model}`), env, r.problems),
    pricing: new Map(),
    enginePython: r.str('KLEIN_ENGINE_PYTHON', resolve(projectRoot(), 'engine/.venv/bin/python')),
    allowNetworks: r.str('KLEIN_ALLOW_NETWORKS', ''),
    logLevel: r.oneOf('KLEIN_LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    syncTimeoutS: r.num('KLEIN_SYNC_TIMEOUT', 300, 1, 3600),
    bodyLimitBytes: r.int('KLEIN_BODY_LIMIT', 64 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    imageMaxBytes: r.int('KLEIN_IMAGE_MAX_BYTES', 20 * 1024 * 1024, 1024, 512 * 1024 * 1024),
    imageMaxPixels: r.int('KLEIN_IMAGE_MAX_PIXELS', 40_000_000, 4096, 400_000_000),
    fetchTimeoutMs: r.int('KLEIN_FETCH_TIMEOUT_MS', 10_000, 100, 120_000),
    defaultRpm: r.int('KLEIN_DEFAULT_RPM', 60, 1, 1_000_000),
    defaultConcurrency: r.int('KLEIN_DEFAULT_CONCURRENCY', 4, 1, 10_000),
    imageMetadata: r.bool('KLEIN_IMAGE_METADATA', true),
    maxAttempts: r.int('KLEIN_MAX_ATTEMPTS', 3, 1, 10),
    engineStartTimeoutS: r.int('KLEIN_ENGINE_START_TIMEOUT', 1800, 10, 86_400),
    startingRetryAfterS: r.int('KLEIN_STARTING_RETRY_AFTER', 10, 1, 600),
    publicUrl: '',
    retentionMs: r.duration('KLEIN_RETENTION', 24 * 3_600_000),
    webhookAttempts: r.int('KLEIN_WEBHOOK_ATTEMPTS', 9, 1, 50),
    webhookBackoffMs: r.int('KLEIN_WEBHOOK_BACKOFF_MS', 15_000, 10, 3_600_000),
    webhookTimeoutMs: r.int('KLEIN_WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
    databaseUrl: null,
    redisUrl: null,
    redisPrefix: r.str('KLEIN_REDIS_PREFIX', 'klein'),
    jobLockMs: r.int('KLEIN_JOB_LOCK_MS', 10_000, 1000, 3_600_000),
    idleExitMs: r.int('KLEIN_IDLE_EXIT', 0, 0, 86_400) * 1000,
    reconcileMs: r.int('KLEIN_RECONCILE_MS', 10_000, 100, 3_600_000),
    workerMetricsPort: r.int('KLEIN_WORKER_METRICS_PORT', 0, 0, 65535),
    // 55 s: a dripping client gets its 408 within a minute, Node's check of the timeouts
    // (every second, gateway/app.ts) included.
    requestTimeoutMs: r.num('KLEIN_REQUEST_TIMEOUT', 55, 1, 3600) * 1000,
    headersTimeoutMs: r.num('KLEIN_HEADERS_TIMEOUT', 20, 1, 3600) * 1000,
    maxConnections: r.int('KLEIN_MAX_CONNECTIONS', 1024, 0, 1_000_000),
    faults: [],
    linkSecrets: [],
    linkTtlS: r.int('KLEIN_LINK_TTL', 3600, 60, 7 * 86_400),
    // Short-lived (contract §9): an events_url is for following the request now, not for sharing.
    eventsLinkTtlS: r.int('KLEIN_EVENTS_LINK_TTL', 900, 60, 86_400),
    s3: null,
    loraDir: null,
    loraMaxBytes: r.int('KLEIN_LORA_MAX_BYTES', 2 * 1024 ** 3, 1024, 64 * 1024 ** 3),
    loraCacheBytes: r.int('KLEIN_LORA_CACHE_BYTES', 20 * 1024 ** 3, 0, 10 * 1024 ** 4),
    loraHeaderTimeoutMs: r.int('KLEIN_LORA_HEADER_TIMEOUT_MS', 10_000, 100, 120_000),
    loraDownloadTimeoutMs: r.int('KLEIN_LORA_DOWNLOAD_TIMEOUT_MS', 600_000, 1000, 3_600_000),
    hfToken: r.str('HF_TOKEN', '') || null,
    openAiModelAliases: new Map(),
  };
  const dbUrl = r.str('DATABASE_URL', '');
  if (dbUrl && !/^postgres(ql)?:\/\/[^/]/.test(dbUrl)) r.problems.push(`DATABASE_URL: must be a postgres:// URL, got "${redact(dbUrl)}"`);
  cfg.databaseUrl = dbUrl || null;
  const redisUrl = r.str('REDIS_URL', '');
  if (redisUrl && !/^rediss?:\/\/[^/]/.test(redisUrl)) r.problems.push(`REDIS_URL: must be a redis:// or rediss:// URL, got "${redact(redisUrl)}"`);
  cfg.redisUrl = redisUrl || null;
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(cfg.redisPrefix)) r.problems.push(`KLEIN_REDIS_PREFIX: must be 1 to 64 letters, digits, '_', '.' or '-', got "${cfg.redisPrefix}"`);
  const bucket = r.str('S3_BUCKET', '');
  const endpoint = r.str('S3_ENDPOINT', '');
  if (endpoint && !/^https?:\/\//.test(endpoint)) r.problems.push(`S3_ENDPOINT: must be an http(s) URL, got "${endpoint}"`);
  if (endpoint && !bucket) r.problems.push('S3_BUCKET: must be set when S3_ENDPOINT is');
  cfg.s3 = bucket
    ? {
        bucket,
        ...(endpoint ? { endpoint } : {}),
        region: r.str('S3_REGION', r.str('AWS_REGION', 'us-east-1')),
        prefix: r.str('S3_PREFIX', ''),
        forcePathStyle: r.bool('S3_FORCE_PATH_STYLE', Boolean(endpoint)),
      }
    : null;
  if (cfg.headersTimeoutMs > cfg.requestTimeoutMs) {
    r.problems.push(`KLEIN_HEADERS_TIMEOUT: must not be longer than KLEIN_REQUEST_TIMEOUT (${cfg.requestTimeoutMs / 1000} s), got ${cfg.headersTimeoutMs / 1000} s`);
  }
  const faults = r.str('KLEIN_FAULTS', '').split(',').map((f) => f.trim()).filter(Boolean);
  const unknownFaults = faults.filter((f) => !FAULT_POINTS.includes(f));
  if (unknownFaults.length > 0) r.problems.push(`KLEIN_FAULTS: unknown crash point ${unknownFaults.join(', ')}; known: ${FAULT_POINTS.join(', ')}`);
  cfg.faults = faults;
  cfg.linkSecrets = r.str('KLEIN_LINK_SECRET', '').split(',').map((x) => x.trim()).filter(Boolean);
  if (cfg.linkSecrets.some((x) => x.length < 32)) r.problems.push('KLEIN_LINK_SECRET: each comma-separated secret must be at least 32 characters (e.g. `openssl rand -base64 32`)');
  const loraDir = r.str('KLEIN_LORA_DIR', '');
  if (loraDir && !existsSync(loraDir)) r.problems.push(`KLEIN_LORA_DIR: ${loraDir} does not exist`);
  cfg.loraDir = loraDir ? resolve(loraDir) : null;
  const pub = r.str('KLEIN_PUBLIC_URL', '');
  if (pub && !/^https?:\/\/[^/]+/.test(pub)) r.problems.push(`KLEIN_PUBLIC_URL: must be an http(s) URL, got "${pub}"`);
  cfg.publicUrl = pub.replace(/\/$/, '');
  try {
    cfg.pricing = parseModelPricing(env, cfg.models.slugs);
  } catch (err) {
    if (!(err instanceof PricingConfigError)) throw err;
    r.problems.push(...err.problems);
  }
  cfg.openAiModelAliases = modelAliases(env.KLEIN_OPENAI_MODEL_ALIASES ?? defaultOpenAiModelAliases(cfg.models.first.slug), cfg.models, r.problems);
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return cfg;
}

/**
 * `alias=slug,…` (contract §8; set but empty: no aliases): each alias a name of 1 to 64 letters, digits, '.', '_', ':'
 * or '-', given once, not a served slug itself, and mapped to a served slug.
 */
function modelAliases(raw: string, models: ServedModels, problems: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const name = 'KLEIN_OPENAI_MODEL_ALIASES';
  for (const entry of raw.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9._:-]{1,64})\s*=\s*(\S+)$/.exec(entry);
    if (!m) {
      problems.push(`${name}: each entry must be alias=slug (alias: 1 to 64 letters, digits, '.', '_', ':' or '-'), got "${entry.slice(0, 100)}"`);
      continue;
    }
    const [, alias, slug] = m as unknown as [string, string, string];
    if (!models.get(slug)) problems.push(`${name}: ${alias} must map to a served model (${models.slugs.join(', ')}), got "${slug.slice(0, 100)}"`);
    else if (models.get(alias)) problems.push(`${name}: ${alias} is a served model, not an alias`);
    else if (out.has(alias)) problems.push(`${name}: ${alias} is given more than once`);
    else out.set(alias, slug);
  }
  return out;
}
