/**
 * Running robustness tasks (one defence, one eps, a batch of images) in this thread (`TaskRunner`) or
 * spread over worker threads (`runInWorkers`; each worker holds its own TaskRunner and tfjs instance).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { tf } from '../../src/backend/index.js';
import { loadDataset, loadFixture, type Dataset, type DatasetName } from '../../src/data/index.js';
import type { PurifyOptions } from '../../src/purify/index.js';
import type { Norm } from '../common.js';
import { adaptive } from '../eot.js';
import { loadDefense, type DefenseSetup } from '../defenses.js';
import { buildAttacks, hashSeed, type AttackName, type AttackSettings } from './config.js';
import { attackBatch, type ImageRow } from './evaluate.js';

/** What every task of a run shares (structured-clonable: it is sent to the workers). */
export interface RunSpec {
  dataset: DatasetName;
  split: 'test' | 'val' | 'fixture';
  norm: Norm;
  attacks: AttackName[];
  settings: AttackSettings;
  seed: number;
  purify?: PurifyOptions;
}

export interface Task {
  defense: string;
  eps: number;
  /** split indices still to attack in this batch */
  indices: number[];
  /** first index of the planned batch: seeds derive from it, so a partly logged batch keeps its seed */
  seedIndex: number;
}

export function loadImages(spec: Pick<RunSpec, 'dataset' | 'split'>): Dataset {
  return spec.split === 'fixture' ? loadFixture() : loadDataset(spec.dataset, spec.split);
}

export class TaskRunner {
  private readonly setups = new Map<string, Promise<DefenseSetup>>();

  constructor(
    readonly spec: RunSpec,
    readonly ds: Dataset,
    private readonly build: (spec: string) => Promise<DefenseSetup> = (d) => loadDefense(d, { dataset: spec.dataset, purify: spec.purify }),
  ) {}

  private setup(defense: string): Promise<DefenseSetup> {
    let s = this.setups.get(defense);
    if (!s) {
      s = this.build(defense);
      this.setups.set(defense, s);
    }
    return s;
  }

  async run(task: Task): Promise<ImageRow[]> {
    const { defense, classifier, gradient } = await this.setup(task.defense);
    const { settings, norm } = this.spec;
    const seed = hashSeed(this.spec.seed, task.defense, task.eps, task.seedIndex);
    const model = adaptive(defense, classifier, { eot: defense.randomized ? settings.eot : 1, gradient, seed });
    const size = this.ds.shape[0] * this.ds.shape[1] * this.ds.shape[2];
    const pixels = new Float32Array(task.indices.length * size);
    task.indices.forEach((i, r) => pixels.set(this.ds.images.subarray(i * size, (i + 1) * size), r * size));
    const x = tf.tensor4d(pixels, [task.indices.length, ...this.ds.shape]);
    try {
      return attackBatch({
        model, x, labels: Int32Array.from(task.indices, (i) => this.ds.labels[i]), indices: task.indices, eps: task.eps, norm,
        attacks: buildAttacks(this.spec.attacks, settings, norm, task.eps, seed), draws: defense.randomized ? settings.draws : 1,
      });
    } finally {
      x.dispose();
    }
  }
}

/**
 * A worker running worker.js next to this file when compiled, else worker.ts. Under tsx, Node 20 does not
 * apply `execArgv: ['--import', 'tsx']` to a worker's entry module, so the worker registers tsx's loader
 * itself (its ESM API) before importing worker.ts.
 */
function spawnWorker(workerData: unknown): Worker {
  const js = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return new Worker(js, { workerData });
  const api = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const ts = new URL('./worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); });`, { eval: true, workerData });
}

export type WorkerMessage = { rows: ImageRow[] } | { error: string };

/** Hands tasks to `n` workers as they become free; `onRows` runs in this thread for each finished task. */
export async function runInWorkers(spec: RunSpec, tasks: Task[], n: number, onRows: (task: Task, rows: ImageRow[]) => void): Promise<void> {
  const queue = [...tasks];
  const workers = Array.from({ length: Math.min(n, tasks.length) }, () => spawnWorker({ spec }));
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            let current: Task | undefined;
            const next = () => {
              current = queue.shift();
              if (current) w.postMessage(current);
              else resolve();
            };
            w.on('message', (m: WorkerMessage) => {
              if ('error' in m) return reject(new Error(`worker (${current?.defense} eps ${current?.eps}): ${m.error}`));
              try {
                onRows(current!, m.rows);
              } catch (e) {
                return reject(e);
              }
              next();
            });
            w.on('error', reject);
            w.on('exit', (code) => current && reject(new Error(`worker exited with code ${code} during ${current.defense} eps ${current.eps}`)));
            next();
          }),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
