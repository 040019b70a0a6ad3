/**
 * Worker threads for this package's own parallel runs (perf bench, robustness runs, certification):
 * startWorker starts a module that is worker.js when compiled (dist/) and worker.ts from source (tsx);
 * runInWorkers / serveTasks hand a list of tasks to a few such workers. (The server's piscina pool loads its
 * worker differently, through require().)
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, parentPort } from 'node:worker_threads';

/**
 * A Worker running `entry` (a module URL without extension, e.g. `new URL('./worker', import.meta.url)`):
 * entry.js if it exists, else entry.ts. Node 20 applies neither the parent's tsx hooks nor
 * `execArgv: ['--import', 'tsx']` to a worker's entry module ("Unknown file extension .ts"), so from source
 * an eval'd bootstrap registers tsx's ESM loader in the worker (tsx/esm/api) and then imports entry.ts.
 */
/** True when a tfjs-node(-gpu) binding will be used: it owns the GPU/CPU and cannot load in several threads. */
export function tfjsNodeInstalled(): boolean {
  const forced = process.env.ADVPURIFY_BACKEND?.trim().toLowerCase();
  if (forced === 'wasm' || forced === 'cpu') return false;
  const req = createRequire(import.meta.url);
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      req.resolve(pkg);
      return true;
    } catch {
      /* not installed */
    }
  }
  return false;
}

/** Default worker-thread count: the core count, or 1 with a tfjs-node binding. */
export function defaultWorkers(): number {
  return tfjsNodeInstalled() ? 1 : availableParallelism();
}

export function startWorker(entry: URL, workerData?: unknown): Worker {
  const js = new URL(`${entry.href}.js`);
  if (existsSync(fileURLToPath(js))) return new Worker(js, { workerData });
  const ts = new URL(`${entry.href}.ts`);
  if (!existsSync(fileURLToPath(ts))) throw new Error(`no worker module at ${fileURLToPath(js)} or ${fileURLToPath(ts)}`);
  const api = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const bootstrap = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ts.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

/** What a task worker (serveTasks) answers for each task. */
export type TaskReply<R> = { result: R } | { error: string };

/**
 * Hands `tasks` to `n` workers started from `entry` (see startWorker; each runs serveTasks), the next task to
 * whichever worker is free; `onResult` runs in this thread, in completion order. Rejects on the first failure
 * (a task's error, a worker that crashes or exits mid-task); the workers are terminated either way.
 */
export async function runInWorkers<T, R>(
  entry: URL,
  workerData: unknown,
  tasks: readonly T[],
  n: number,
  onResult: (task: T, result: R) => void,
  describe: (task: T) => string = () => 'a task',
  /** asked just before a task is handed out: true drops it (e.g. another process has done it meanwhile) */
  skip: (task: T) => boolean = () => false,
): Promise<void> {
  const queue = [...tasks];
  const workers = Array.from({ length: Math.max(0, Math.min(Math.floor(n), queue.length)) }, () => startWorker(entry, workerData));
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            let current: T | undefined;
            const next = () => {
              try {
                do current = queue.shift();
                while (current !== undefined && skip(current));
              } catch (e) {
                current = undefined;
                return reject(e);
              }
              if (current !== undefined) w.postMessage(current);
              else resolve();
            };
            w.on('message', (m: TaskReply<R>) => {
              if ('error' in m) return reject(new Error(`worker (${describe(current!)}): ${m.error}`));
              try {
                onResult(current!, m.result);
              } catch (e) {
                return reject(e);
              }
              next();
            });
            w.on('error', reject);
            w.on('exit', (code) => current !== undefined && reject(new Error(`worker exited with code ${code} during ${describe(current)}`)));
            next();
          }),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** The worker side of runInWorkers: run each task sent to this thread, one at a time, and answer with a TaskReply. */
export function serveTasks<T, R>(run: (task: T) => Promise<R>): void {
  const port = parentPort;
  if (!port) throw new Error('serveTasks runs in a worker thread');
  port.on('message', (task: T) => {
    run(task).then(
      (result) => port.postMessage({ result } satisfies TaskReply<R>),
      (e: unknown) => port.postMessage({ error: e instanceof Error ? e.message : String(e) } satisfies TaskReply<R>),
    );
  });
}
