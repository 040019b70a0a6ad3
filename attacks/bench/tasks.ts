/**
 * Running robustness tasks (one defence, one eps, a batch of images) in this thread (`TaskRunner`) or
 * spread over worker threads (`runInWorkers`; each worker holds its own TaskRunner and tfjs instance).
 */
import { tf } from '../../src/backend/index.js';
import { loadDataset, loadFixture, type Dataset, type DatasetName } from '../../src/data/index.js';
import type { PurifyOptions } from '../../src/purify/index.js';
import { runInWorkers as runTasksInWorkers } from '../../src/util/threads.js';
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
    const { defense, classifier, gradient, votes } = await this.setup(task.defense);
    const { settings, norm } = this.spec;
    const seed = hashSeed(this.spec.seed, task.defense, task.eps, task.seedIndex);
    const model = adaptive(defense, classifier, { eot: defense.randomized ? settings.eot : 1, gradient, seed, votes });
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

/** Hands tasks to `n` workers (worker.ts) as they become free; `onRows` runs in this thread for each finished task. */
export async function runInWorkers(
  spec: RunSpec,
  tasks: Task[],
  n: number,
  onRows: (task: Task, rows: ImageRow[]) => void,
  /** asked just before a task is handed out: true drops it (another run has logged it meanwhile) */
  skip?: (task: Task) => boolean,
): Promise<void> {
  await runTasksInWorkers<Task, ImageRow[]>(new URL('./worker', import.meta.url), { spec }, tasks, n, onRows, (t) => `${t.defense} eps ${t.eps}`, skip);
}
