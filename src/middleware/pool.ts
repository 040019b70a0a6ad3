/**
 * PurifyPool: the main thread's side of purification. Worker threads (piscina) each hold one tfjs
 * instance; this class keeps a bounded FIFO queue in front of them and never blocks the event loop.
 * - at most `workers x 2 x maxBatch` tasks are in the workers at once: while one batch runs, the next
 *   one forms in the worker, so under load batches are full (with one batch's worth of slots, a
 *   worker's batches alternate at about half of maxBatch);
 * - beyond that, up to `maxQueue` wait here; more are shed at once with a 503 and Retry-After;
 * - each task has a deadline (504) and an AbortSignal (client gone): queued work is dropped, work
 *   already in a worker runs to completion and its result is discarded (aborting a piscina task
 *   mid-run would kill the worker and its batch-mates);
 * - a worker that dies fails only its own tasks (500 WORKER_FAILED); piscina starts a replacement,
 *   and if it gives up (a replacement dying during start-up) the pool rebuilds it.
 */
import { EventEmitter } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { defaultWorkers, tfjsNodeInstalled } from '../util/threads.js';
import { PurifyError } from '../purify/errors.js';
import { HttpError, overloaded } from './errors.js';
import type { ChannelMessage, ClassifyResult, PurifyResult, Task, TaskResult, WorkerConfig, WorkerStats } from './protocol.js';

export interface PoolOptions {
  /** Shipped model name ('fashion-mnist', 'mnist'), a directory holding diffusion.{json,bin} (and
   *  classifier.{json,bin}), or a diffusion weights path without suffix. Default 'fashion-mnist'. */
  model?: string;
  /** Classifier for classify tasks: shipped name, weights path, or false for none.
   *  Default: the model's own classifier (shipped name or DIR/classifier) when it exists. */
  classifier?: string | false;
  /** Worker threads; default: the core count (1 when a tfjs-node binding is installed: it owns the GPU/CPU and cannot load in several threads). */
  workers?: number;
  /** Largest micro-batch a worker forms (default 16). */
  maxBatch?: number;
  /** Longest a worker waits for a batch to fill, ms (default 5). */
  maxBatchWaitMs?: number;
  /** Tasks that may wait beyond those in the workers; more are shed with 503 (default 32 per worker). */
  maxQueue?: number;
  /** Default per-task deadline, ms (default 30000). */
  deadlineMs?: number;
  /** Linux: raise worker threads' nice value by this much, so the event loop stays responsive (default 5; 0: off). */
  workerNice?: number;
}

export type Outcome = 'ok' | 'client_error' | 'shed' | 'timeout' | 'cancelled' | 'worker_failed' | 'error';

export interface TaskEvent {
  kind: Task['kind'];
  mode: string;
  outcome: Outcome;
  /** enqueue -> settled, ms */
  ms: number;
  queueMs: number;
  batchSize?: number;
}

export interface RunOptions {
  signal?: AbortSignal;
  deadlineMs?: number;
}

export type Timed<R> = R & { ms: number; queueMs: number };

interface Entry {
  task: Task;
  enqueued: number;
  started?: number;
  settled: boolean;
  timer?: NodeJS.Timeout;
  resolve: (r: Timed<PurifyResult | ClassifyResult>) => void;
  reject: (e: HttpError) => void;
  cleanup: () => void;
}

/**
 * Resolve `model` to what workers load. Only touches the filesystem (no tfjs in the main thread):
 * a path that holds no weights fails here, at once, rather than in every worker.
 */
export function resolveModel(model = 'fashion-mnist', classifier?: string | false): Pick<WorkerConfig, 'diffusion' | 'classifier' | 'classifierOptional'> {
  let diffusion = model;
  let implicit: string | null = model; // shipped name: its own classifier, if shipped
  if (model.includes('/') || model.includes('\\')) {
    const isDir = existsSync(model) && statSync(model).isDirectory();
    diffusion = isDir ? join(model, 'diffusion') : model;
    implicit = isDir ? join(model, 'classifier') : null;
    if (!existsSync(`${diffusion}.json`)) throw new PurifyError('UNKNOWN_MODEL', `no diffusion weights at ${diffusion}.json (give a shipped model name or a directory holding diffusion.json/.bin)`, 'model');
  }
  if (classifier === false) return { diffusion, classifier: null, classifierOptional: true };
  if (classifier !== undefined) return { diffusion, classifier, classifierOptional: false };
  return { diffusion, classifier: implicit, classifierOptional: true };
}

/**
 * The worker file next to this one: worker.js when compiled, worker.ts (through tsx) from source.
 * From source, piscina loads it with require(), which tsx's CJS hooks compile (on Node 20 the ESM
 * hooks are not active in worker threads), so worker.ts and its imports must not use top-level await.
 */
function workerFile(): { filename: string; execArgv: string[] } {
  const js = fileURLToPath(new URL('./worker.js', import.meta.url));
  if (existsSync(js)) return { filename: js, execArgv: [] };
  return { filename: fileURLToPath(new URL('./worker.ts', import.meta.url)), execArgv: ['--import', 'tsx'] };
}

let poolSeq = 0;

export class PurifyPool extends EventEmitter {
  readonly size: number;
  readonly maxBatch: number;
  /** tasks one worker holds at once: a running batch and the next one forming */
  get slotsPerWorker(): number {
    return 2 * this.maxBatch;
  }
  readonly maxQueue: number;
  readonly deadlineMs: number;
  readonly config: WorkerConfig;
  /** Resolves when the first worker has its models loaded; rejects if a worker cannot load them. */
  readonly ready: Promise<void>;
  private piscina: Piscina<Task, TaskResult>;
  private readonly queue: Entry[] = [];
  private running = 0;
  private readonly readyThreads = new Map<number, string>();
  private initError?: { code: string; message: string };
  private classifierLoaded?: boolean;
  private readyReject: (e: Error) => void = () => {};
  private readonly channel: BroadcastChannel;
  private statsSeq = 0;
  private readonly statsWaiters = new Map<number, (s: WorkerStats) => void>();
  private serviceMsEwma = 0;
  private closed = false;
  private readonly watchdog: NodeJS.Timeout;

  constructor(o: PoolOptions = {}) {
    super();
    const tfjsNode = tfjsNodeInstalled();
    this.size = Math.max(1, tfjsNode ? 1 : Math.floor(o.workers ?? defaultWorkers()));
    this.maxBatch = Math.max(1, Math.floor(o.maxBatch ?? 16));
    this.maxQueue = Math.max(0, Math.floor(o.maxQueue ?? 32 * this.size));
    this.deadlineMs = o.deadlineMs ?? 30_000;
    const m = resolveModel(o.model, o.classifier);
    this.config = { ...m, maxBatch: this.maxBatch, maxBatchWaitMs: o.maxBatchWaitMs ?? 5, nice: Math.max(0, Math.floor(o.workerNice ?? 5)), channel: `advpurify-${process.pid}-${poolSeq++}` };
    this.channel = new BroadcastChannel(this.config.channel);
    let readyResolve!: () => void;
    this.ready = new Promise<void>((res, rej) => ((readyResolve = res), (this.readyReject = rej)));
    // keep the process alive while workers load (awaiting `ready` alone must not let it exit), not after
    this.ready.then(
      () => this.channel.unref(),
      () => this.channel.unref(),
    );
    this.channel.onmessage = (ev: unknown) => {
      const msg = (ev as { data?: ChannelMessage }).data;
      if (msg?.type === 'ready') {
        this.readyThreads.set(msg.threadId, msg.backend);
        this.classifierLoaded = msg.classifier;
        readyResolve();
      } else if (msg?.type === 'init-failed') {
        this.initError = { code: msg.code, message: msg.message };
        this.readyReject(new HttpError(503, 'MODEL_UNAVAILABLE', msg.message));
      } else if (msg?.type === 'stats-reply') {
        this.statsWaiters.get(msg.id)?.(msg.stats);
      }
    };
    this.piscina = this.createPiscina();
    this.watchdog = setInterval(() => this.checkWorkers(), 1000).unref();
  }

  private createPiscina(): Piscina<Task, TaskResult> {
    const { filename, execArgv } = workerFile();
    const p = new Piscina<Task, TaskResult>({
      filename,
      execArgv,
      minThreads: this.size,
      maxThreads: this.size,
      concurrentTasksPerWorker: this.slotsPerWorker,
      idleTimeout: 2 ** 31 - 1,
      atomics: 'disabled', // workers run timers (batching) and async I/O between tasks
      workerData: this.config,
    });
    p.on('workerDestroy', () => this.pruneReady());
    // a worker that cannot even start (bad install) fails readiness; later errors reach their tasks
    p.on('error', (e: unknown) => this.readyReject(new HttpError(503, 'WORKER_FAILED', `purification worker failed to start: ${e instanceof Error ? e.message : String(e)}`)));
    return p;
  }

  private pruneReady(): void {
    const live = new Set(this.piscina.threads.map((t) => t.threadId));
    for (const id of this.readyThreads.keys()) if (!live.has(id)) this.readyThreads.delete(id);
  }

  private lowSince = 0;
  private rebuilds = 0;
  private checkWorkers(): void {
    if (this.closed) return;
    this.pruneReady();
    if (this.piscina.threads.length >= this.size) {
      this.lowSince = 0;
      if (this.readyThreads.size > 0) this.rebuilds = 0;
      return;
    }
    this.lowSince ||= Date.now();
    if (Date.now() - this.lowSince < Math.min(60_000, 3000 * 2 ** this.rebuilds)) return;
    // piscina stops replacing workers that die while starting; start afresh (backing off if that keeps failing)
    const old = this.piscina;
    this.piscina = this.createPiscina();
    this.lowSince = 0;
    this.rebuilds++;
    void old.destroy().catch(() => {});
  }

  /** Tasks waiting for a worker slot. */
  get queueDepth(): number {
    return this.queue.length;
  }
  /** True when a new task would be shed. */
  get saturated(): boolean {
    return this.running >= this.size * this.slotsPerWorker && this.queue.length >= this.maxQueue;
  }
  /** Tasks inside workers. */
  get inFlight(): number {
    return this.running;
  }

  readiness(): { ready: boolean; workers: number; readyWorkers: number; backend?: string; classifierLoaded?: boolean; error?: { code: string; message: string } } {
    this.pruneReady();
    const backend = this.readyThreads.values().next().value;
    const ready = this.readyThreads.size > 0 && !this.closed;
    return { ready, workers: this.piscina.threads.length, readyWorkers: this.readyThreads.size, backend, classifierLoaded: this.classifierLoaded, error: this.initError };
  }

  /** Seconds a new client should wait before retrying, from the current backlog. */
  retryAfterS(): number {
    const backlog = this.queue.length + this.running;
    const est = (backlog * (this.serviceMsEwma || 1000)) / this.size / 1000;
    return Math.min(30, Math.max(1, Math.ceil(est)));
  }

  run(task: Task & { kind: 'purify' }, o?: RunOptions): Promise<Timed<PurifyResult>>;
  run(task: Task & { kind: 'classify' }, o?: RunOptions): Promise<Timed<ClassifyResult>>;
  run(task: Task, o: RunOptions = {}): Promise<Timed<PurifyResult | ClassifyResult>> {
    const enqueued = performance.now();
    const event = (outcome: Outcome, extra: Partial<TaskEvent> = {}) =>
      this.emit('task', { kind: task.kind, mode: task.options.mode, outcome, ms: performance.now() - enqueued, queueMs: 0, ...extra } satisfies TaskEvent);
    if (this.closed) return Promise.reject(overloaded('SHUTTING_DOWN', 'the server is shutting down', 5));
    if (task.kind === 'classify' && !this.config.classifier) {
      return Promise.reject(new HttpError(501, 'NO_CLASSIFIER', 'this server has no classifier configured'));
    }
    if (o.signal?.aborted) return Promise.reject(new HttpError(499, 'CLIENT_CLOSED', 'client closed the request'));
    if (this.saturated) {
      event('shed');
      return Promise.reject(overloaded('QUEUE_FULL', 'the purification queue is full; retry later', this.retryAfterS()));
    }
    return new Promise((resolve, reject) => {
      const entry: Entry = {
        task,
        enqueued,
        settled: false,
        resolve: (r) => {
          entry.cleanup();
          event('ok', { queueMs: r.queueMs, batchSize: r.batchSize });
          resolve(r);
        },
        reject: (e) => {
          entry.cleanup();
          const outcome: Outcome =
            e.code === 'DEADLINE_EXCEEDED' ? 'timeout' : e.code === 'CLIENT_CLOSED' ? 'cancelled' : e.code === 'WORKER_FAILED' ? 'worker_failed' : e.status < 500 ? 'client_error' : 'error';
          event(outcome, { queueMs: (entry.started ?? performance.now()) - enqueued });
          reject(e);
        },
        cleanup: () => {
          entry.settled = true;
          if (entry.timer) clearTimeout(entry.timer);
          o.signal?.removeEventListener('abort', onAbort);
        },
      };
      const drop = (e: HttpError) => {
        if (entry.settled) return;
        const i = this.queue.indexOf(entry);
        if (i >= 0) this.queue.splice(i, 1);
        entry.reject(e);
      };
      const onAbort = () => drop(new HttpError(499, 'CLIENT_CLOSED', 'client closed the request'));
      o.signal?.addEventListener('abort', onAbort, { once: true });
      const deadline = o.deadlineMs ?? this.deadlineMs;
      entry.timer = setTimeout(() => drop(new HttpError(504, 'DEADLINE_EXCEEDED', `purification did not finish within ${deadline} ms`)), deadline);
      this.queue.push(entry);
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.size * this.slotsPerWorker && this.queue.length > 0) {
      const e = this.queue.shift() as Entry;
      this.dispatch(e);
    }
  }

  private dispatch(e: Entry): void {
    this.running++;
    e.started = performance.now();
    this.piscina.run(e.task).then(
      (r) => {
        const serviceMs = performance.now() - (e.started as number);
        this.serviceMsEwma = this.serviceMsEwma ? 0.9 * this.serviceMsEwma + 0.1 * (serviceMs / Math.max(1, r.ok ? r.batchSize : 1)) : serviceMs;
        if (e.settled) return;
        if (r.ok) e.resolve({ ...r, ms: performance.now() - e.enqueued, queueMs: (e.started as number) - e.enqueued });
        else e.reject(new HttpError(r.error.status, r.error.code, r.error.message, r.error.field));
      },
      () => {
        if (!e.settled) e.reject(new HttpError(500, 'WORKER_FAILED', 'the worker handling this request failed; retry'));
      },
    ).finally(() => {
      this.running--;
      this.pump();
    });
  }

  /** Ask every worker for its tensor count and counters (answers within `timeoutMs`). */
  async workerStats(timeoutMs = 2000): Promise<WorkerStats[]> {
    const id = ++this.statsSeq;
    const want = this.piscina.threads.length;
    const got: WorkerStats[] = [];
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.statsWaiters.set(id, (s) => {
        got.push(s);
        if (got.length >= want) {
          clearTimeout(t);
          resolve();
        }
      });
      this.channel.postMessage({ type: 'stats', id } satisfies ChannelMessage);
    });
    this.statsWaiters.delete(id);
    return got.sort((a, b) => a.threadId - b.threadId);
  }

  /** The live worker threads (for operators' tooling and tests, e.g. to terminate one). */
  get threads(): readonly { threadId: number; terminate(): Promise<number> }[] {
    return this.piscina.threads;
  }

  /** Stop taking work, fail what is queued (503), wait for running tasks, stop the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    for (const e of this.queue.splice(0)) e.reject(overloaded('SHUTTING_DOWN', 'the server is shutting down', 5));
    await this.piscina.close().catch(() => this.piscina.destroy());
    this.channel.close();
  }
}
