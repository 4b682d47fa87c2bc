/**
 * Supervises one engine process (one GPU): spawns `python -m klein_engine serve`, waits for
 * `ready`, runs jobs over the frame protocol, and restarts the engine with exponential
 * backoff when it crashes, hangs at start or breaks the stream. Up to the engine's
 * `max_batch` jobs are in flight at once, sent as one batch (`generateBatch`); each has its
 * own frames — progress, cancel, result or error — matched by its id. Every job in flight
 * when an engine dies fails with engine_failed (502); its caller releases or requeues it.
 *
 *   STOPPED ─start─▶ STARTING ─ready─▶ READY ⇄ BUSY
 *                       │  ▲                │ exit / broken stream
 *                       ▼  └── backoff ── UNHEALTHY(reason)
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import { ApiError } from '../contract/errors.js';
import {
  type EngineFacts,
  type EngineMessage,
  EngineMessageDecoder,
  type EngineTimings,
  encodeCancel,
  encodeGenerate,
  encodeShutdown,
} from './protocol.js';

export type EngineState = 'STOPPED' | 'STARTING' | 'READY' | 'BUSY' | 'UNHEALTHY';

export interface EngineLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface EngineOptions {
  python: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  logger: EngineLogger;
  /** Time allowed from spawn to `ready` (weights may be read from disk or downloaded). */
  startTimeoutMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** After a cancel, how long the engine may take to answer before it is killed. */
  cancelGraceMs?: number;
  /**
   * The variant the server took the model for (served-models.ts: its defaults follow it).
   * An engine that loads the other one is refused and restarted with backoff, its reason in
   * /health: serving it would run every request with the wrong defaults.
   */
  variant?: 'distilled' | 'base';
}

export interface EngineJob {
  id: string;
  params: ResolvedParams;
  images: RgbImage[];
  preview: boolean;
  /** LoRA files at hand (worker/run-job.ts resolves them through the cache). */
  loras?: ReadonlyArray<{ key: string; path: string; scale: number }>;
}

export interface EngineOutput {
  image: RgbImage;
  seed: number;
  timings: EngineTimings;
}

/** The job was cancelled (by the caller's signal); not an engine failure. */
export class Cancelled extends Error {
  constructor(readonly reason: string = 'cancelled') {
    super(`cancelled (${reason})`);
    this.name = 'Cancelled';
  }
}

/** The engine process died while running the job (a crash, a kill, a broken stream). */
export class EngineCrashed extends ApiError {
  constructor(message: string) {
    super('engine_failed', message);
    this.name = 'EngineCrashed';
  }
}

/** What the caller of a job hears: its steps, and its cancel. */
export interface GenerateOptions {
  onProgress?: (step: number, total: number, preview?: RgbImage) => void;
  signal?: AbortSignal;
}

interface InFlight {
  id: string;
  resolve: (output: EngineOutput) => void;
  reject: (e: Error) => void;
  onProgress?: (step: number, total: number, preview?: RgbImage) => void;
  graceTimer?: NodeJS.Timeout;
  cancelled: boolean;
}

export class EngineProcess {
  state: EngineState = 'STOPPED';
  facts: EngineFacts | null = null;
  /** Why the engine is not serving (a load failure's own message, or the crash). */
  lastError: string | null = null;
  restarts = 0;

  private child: ChildProcessWithoutNullStreams | null = null;
  /** The jobs sent and not yet answered, by id. */
  private readonly inFlight = new Map<string, InFlight>();
  private batches = 0;
  private stopping = false;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private startTimer: NodeJS.Timeout | null = null;
  private healthyTimer: NodeJS.Timeout | null = null;
  private loadFailure: string | null = null;
  private readonly listeners: Array<(s: EngineState) => void> = [];
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly options: EngineOptions) {
    this.backoffMs = options.backoffInitialMs ?? 500;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  onStateChange(fn: (s: EngineState) => void): void {
    this.listeners.push(fn);
  }

  start(): void {
    this.stopping = false;
    this.spawn();
  }

  /** Asks the engine to finish and exit; kills it after `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopping = true;
    for (const t of [this.restartTimer, this.startTimer, this.healthyTimer]) if (t) clearTimeout(t);
    const child = this.child;
    if (!child) {
      this.setState('STOPPED');
      return;
    }
    try {
      child.stdin.write(encodeShutdown());
      child.stdin.end();
    } catch {
      /* already gone */
    }
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(killer);
  }

  /** Jobs the engine runs together (`max_batch` of its `ready`; 1 before it is ready). */
  get maxBatch(): number {
    return this.facts?.capabilities.max_batch ?? 1;
  }

  /** One job: a batch of one. */
  generate(job: EngineJob, opts: GenerateOptions = {}): Promise<EngineOutput> {
    return this.generateBatch([{ job, opts }])[0]!;
  }

  /**
   * Sends `jobs` as one batch (the engine runs them together where batch.py allows) and
   * returns each one's outcome. The frames are written back to back in one turn of the event
   * loop, so nothing — a cancel included — comes between them. At most `maxBatch` jobs may be
   * in flight at once.
   */
  generateBatch(jobs: Array<{ job: EngineJob; opts?: GenerateOptions }>): Array<Promise<EngineOutput>> {
    const refuse = (e: Error) => jobs.map(() => Promise.reject(e));
    if (this.inFlight.size + jobs.length > this.maxBatch) {
      return refuse(new Error(`EngineProcess.generateBatch: ${this.inFlight.size} + ${jobs.length} jobs would exceed the engine's max_batch ${this.maxBatch}`));
    }
    if (this.state !== 'READY' || !this.child) {
      return refuse(new ApiError('engine_unavailable', `No engine can take work (${this.lastError ?? this.state.toLowerCase()})`));
    }
    const child = this.child;
    const live = jobs.filter(({ opts }) => !opts?.signal?.aborted);
    const batch = live.length > 1 ? { id: `b${++this.batches}`, size: live.length } : undefined;
    const outcomes = jobs.map(({ job, opts = {} }) => {
      if (opts.signal?.aborted) return Promise.reject(new Cancelled(String(opts.signal.reason ?? 'cancelled')));
      return new Promise<EngineOutput>((resolve, reject) => {
        const entry: InFlight = { id: job.id, resolve, reject, onProgress: opts.onProgress, cancelled: false };
        const onAbort = () => this.cancel(entry, child);
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        const cleanup = () => opts.signal?.removeEventListener('abort', onAbort);
        entry.resolve = (output) => {
          cleanup();
          resolve(output);
        };
        entry.reject = (e) => {
          cleanup();
          reject(e);
        };
        this.inFlight.set(job.id, entry);
      });
    });
    if (live.length > 0) this.setState('BUSY');
    for (const { job } of live) {
      child.stdin.write(encodeGenerate({ id: job.id, params: job.params, images: job.images, preview: job.preview, ...(job.loras ? { loras: job.loras } : {}), batch }));
    }
    return outcomes;
  }

  /** Asks the engine to drop one job (between two steps); kills it if no answer comes. */
  private cancel(entry: InFlight, child: ChildProcessWithoutNullStreams): void {
    if (this.inFlight.get(entry.id) !== entry || entry.cancelled) return;
    entry.cancelled = true;
    try {
      child.stdin.write(encodeCancel(entry.id));
    } catch {
      /* the exit handler fails the job */
    }
    entry.graceTimer = setTimeout(() => {
      this.options.logger.warn({ engine_pid: child.pid, request_id: entry.id }, 'engine did not answer a cancel; killing it');
      child.kill('SIGKILL');
    }, this.options.cancelGraceMs ?? 10_000);
  }

  /** Removes a job that got its answer; READY again once none is left. */
  private settle(id: string): InFlight | null {
    const entry = this.inFlight.get(id);
    if (!entry) return null;
    if (entry.graceTimer) clearTimeout(entry.graceTimer);
    this.inFlight.delete(id);
    if (this.inFlight.size === 0 && this.state === 'BUSY') this.setState('READY');
    return entry;
  }

  // -------------------------------------------------------------- internals
  private setState(s: EngineState): void {
    if (this.state === s) return;
    this.state = s;
    for (const fn of this.listeners) fn(s);
  }

  private spawn(): void {
    this.loadFailure = null;
    this.setState('STARTING');
    const child = spawn(this.options.python, this.options.args ?? ['-m', 'klein_engine', 'serve'], {
      env: this.options.env ?? process.env,
      cwd: this.options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    let resolveExit!: () => void;
    this.exited = new Promise((r) => (resolveExit = r));
    const decoder = new EngineMessageDecoder();
    const log = { engine_pid: child.pid };
    this.options.logger.info(log, 'engine starting');

    this.startTimer = setTimeout(() => {
      if (this.child === child && this.state === 'STARTING') {
        this.lastError = `the engine did not become ready within ${Math.round((this.options.startTimeoutMs ?? 600_000) / 1000)} s`;
        this.options.logger.error(log, this.lastError);
        child.kill('SIGKILL');
      }
    }, this.options.startTimeoutMs ?? 600_000);

    child.stdout.on('data', (chunk: Buffer) => {
      let messages: EngineMessage[];
      try {
        messages = decoder.push(chunk);
      } catch (err) {
        // A bad frame or a malformed known message: nothing the engine says next can be trusted.
        this.options.logger.error({ ...log, err: String(err) }, 'engine broke the protocol stream; restarting it');
        child.kill('SIGKILL');
        return;
      }
      for (const m of messages) this.onMessage(m, child);
    });
    createInterface({ input: child.stderr }).on('line', (line) => this.options.logger.info(log, line));
    child.stdin.on('error', () => undefined); // EPIPE when it dies: handled on exit
    child.on('error', (err) => {
      this.lastError = `cannot start the engine (${this.options.python}): ${err.message}`;
      this.options.logger.error(log, this.lastError);
    });
    child.on('close', (code, signal) => {
      if (this.startTimer) clearTimeout(this.startTimer);
      if (this.healthyTimer) clearTimeout(this.healthyTimer);
      this.child = null;
      const how = signal ? `killed by ${signal}` : `exit status ${code}`;
      const lost = [...this.inFlight.values()];
      this.inFlight.clear();
      for (const entry of lost) {
        if (entry.graceTimer) clearTimeout(entry.graceTimer);
        if (entry.cancelled) entry.reject(new Cancelled('cancelled'));
        else entry.reject(new EngineCrashed(`The engine stopped while generating (${how}); the request was not charged`));
      }
      resolveExit();
      if (this.stopping) {
        this.setState('STOPPED');
        return;
      }
      if (this.loadFailure) {
        this.lastError = this.loadFailure;
        // A model that cannot load will not load in a second either: back off harder.
        this.backoffMs = Math.max(this.backoffMs, 5_000);
      } else {
        this.lastError = `the engine crashed (${how})`;
      }
      this.options.logger.error({ ...log, reason: this.lastError }, 'engine exited; restarting it');
      this.setState('UNHEALTHY');
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.backoffMaxMs ?? 30_000);
      this.restartTimer = setTimeout(() => {
        this.restarts += 1;
        this.spawn();
      }, delay);
    });
  }

  private onMessage(m: EngineMessage, child: ChildProcessWithoutNullStreams): void {
    switch (m.type) {
      case 'ready': {
        if (this.startTimer) clearTimeout(this.startTimer);
        const expected = this.options.variant;
        if (expected && (m.facts.variant === 'distilled' || m.facts.variant === 'base') && m.facts.variant !== expected) {
          this.loadFailure = `the model ${m.facts.model} is ${m.facts.variant}, but the server took it for ${expected} (its defaults follow the variant); check its model_index.json`;
          this.options.logger.error({ engine_pid: child.pid, reason: this.loadFailure }, 'engine loaded another variant');
          child.kill('SIGKILL');
          return;
        }
        this.facts = m.facts;
        this.lastError = null;
        this.options.logger.info({ engine_pid: child.pid, model: m.facts.model, device: m.facts.device, dtype: m.facts.dtype }, 'engine ready');
        // Reset the backoff once the engine has stayed up for a while.
        this.healthyTimer = setTimeout(() => (this.backoffMs = this.options.backoffInitialMs ?? 500), 60_000);
        this.setState('READY');
        return;
      }
      case 'progress':
        this.inFlight.get(m.id)?.onProgress?.(m.step, m.total, m.preview);
        return;
      case 'result': {
        const entry = this.settle(m.id);
        if (!entry) return;
        if (entry.cancelled) entry.reject(new Cancelled('cancelled'));
        else entry.resolve({ image: m.image, seed: m.seed, timings: m.timings });
        return;
      }
      case 'error': {
        if (m.id === null) {
          this.loadFailure = m.message;
          this.options.logger.error({ engine_pid: child.pid, reason: m.message }, 'engine could not load the model');
          return;
        }
        this.settle(m.id)?.reject(mapEngineError(m.code, m.message));
        return;
      }
      default:
        return;
    }
  }
}

function mapEngineError(code: string, message: string): Error {
  switch (code) {
    case 'cancelled':
      return new Cancelled('cancelled');
    case 'out_of_memory':
      return new ApiError('out_of_memory', `The engine ran out of GPU memory: ${message}`);
    case 'invalid_input':
      return new ApiError('validation_failed', `The engine refused the parameters: ${message}`);
    case 'invalid_lora':
      return new ApiError('invalid_lora', `The LoRA does not fit this model: ${message}`, { details: [{ field: 'loras', message }] });
    default:
      return new ApiError('engine_failed', `The engine failed while generating: ${message}`);
  }
}
