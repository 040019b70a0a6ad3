/**
 * `advpurify bench robustness --report-cost`: what an evaluation will cost, measured on this machine.
 * For each defence it times one gradient evaluation (one EOT draw) and one forward pass on a batch of
 * real images, then multiplies by the preset's budget. The budget is the worst case — every image
 * survives every step — so it is an upper bound: attacks stop early on images they have broken, which
 * makes undefended models far cheaper in practice.
 */
import { cpus } from 'node:os';
import { tf, initBackend, readTidy } from '../../src/backend/index.js';
import type { DatasetName } from '../../src/data/index.js';
import type { PurifyOptions } from '../../src/purify/index.js';
import { adaptive } from '../eot.js';
import { loadDefense, type DefenseSetup } from '../defenses.js';
import { PRESETS, defaultAttacks, type AttackName, type AttackSettings, type PresetName } from './config.js';
import { loadImages } from './tasks.js';
import type { Norm } from '../common.js';

export interface CostOptions {
  dataset: DatasetName;
  split?: 'test' | 'val' | 'fixture'; // default 'fixture' (no download needed)
  defenses: string[];
  preset: PresetName;
  settings?: Partial<AttackSettings>;
  norm?: Norm;
  attacks?: AttackName[];
  batchSize?: number; // default 10, as in the runs
  reps?: number; // timed repetitions per measurement (default 2; more until 2 s have passed)
  purify?: PurifyOptions;
  build?: (spec: string) => Promise<DefenseSetup>;
}

export interface CostRow {
  defense: string;
  attack: AttackName;
  /** model calls per image in the worst case */
  gradients: number;
  forwards: number;
  /** wall seconds per image (worst case) */
  secondsPerImage: number;
  /** process CPU seconds per image (worst case); differs from wall time on a loaded machine */
  cpuSecondsPerImage: number;
}

export interface CostReport {
  preset: PresetName;
  settings: AttackSettings;
  batchSize: number;
  machine: string;
  /** per defence: seconds per image of one gradient (one EOT draw) and of one forward pass */
  primitives: { defense: string; gradient: number; forward: number; cpuGradient: number; cpuForward: number }[];
  rows: CostRow[];
}

/** Model calls per image of one attack in the worst case (no early stop); k = EOT draws per gradient. */
export function attackBudget(attack: AttackName, s: AttackSettings, randomized: boolean): { gradients: number; forwards: number } {
  const eot = randomized ? s.eot : 1;
  const judge = randomized ? s.draws : 1; // fresh draws that judge the final image
  if (attack === 'pgd') return { gradients: s.pgdSteps * eot, forwards: 2 + judge }; // + clean pass and last iterate
  if (attack === 'apgd') return { gradients: (s.apgdSteps + 1) * eot, forwards: 1 + judge };
  return { gradients: 0, forwards: s.squareQueries + 1 + judge };
}

/** Mean wall and CPU seconds of f over at least `reps` calls and at least `minSeconds` (after a warm-up call). */
function timed(f: () => void, reps: number, minSeconds = 2): { wall: number; cpu: number } {
  f();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  while (n < reps || performance.now() - t0 < minSeconds * 1000) {
    f();
    n++;
  }
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000 / n, cpu: (c.user + c.system) / 1e6 / n };
}

export async function attackCost(o: CostOptions): Promise<CostReport> {
  await initBackend();
  const settings = { ...PRESETS[o.preset], ...o.settings };
  const attacks = o.attacks ?? defaultAttacks(o.norm ?? 'Linf');
  const b = o.batchSize ?? 10;
  const reps = o.reps ?? 2;
  const ds = loadImages({ dataset: o.dataset, split: o.split ?? 'fixture' });
  const size = ds.shape[0] * ds.shape[1] * ds.shape[2];
  const x = tf.tensor4d(ds.images.slice(0, b * size), [b, ...ds.shape]);
  const y = tf.tensor1d(ds.labels.slice(0, b), 'int32');
  const build = o.build ?? ((d: string) => loadDefense(d, { dataset: o.dataset, purify: o.purify }));
  const report: CostReport = { preset: o.preset, settings, batchSize: b, machine: `${cpus()[0]?.model ?? 'cpu'} x${cpus().length}`, primitives: [], rows: [] };
  try {
    for (const defense of o.defenses) {
      const setup = await build(defense);
      const model = adaptive(setup.defense, setup.classifier, { eot: 1, gradient: setup.gradient, seed: 1, votes: setup.votes });
      const grad = timed(() => {
        const g = model.lossGrad(x, y, 'ce');
        g.grad.dataSync();
        tf.dispose([g.grad, g.loss, g.logits]);
      }, reps);
      const fwd = timed(() => readTidy(() => model.logits(x)), reps);
      report.primitives.push({ defense, gradient: grad.wall / b, forward: fwd.wall / b, cpuGradient: grad.cpu / b, cpuForward: fwd.cpu / b });
      for (const attack of attacks) {
        const { gradients, forwards } = attackBudget(attack, settings, setup.defense.randomized);
        report.rows.push({
          defense, attack, gradients, forwards,
          secondsPerImage: (gradients * grad.wall + forwards * fwd.wall) / b,
          cpuSecondsPerImage: (gradients * grad.cpu + forwards * fwd.cpu) / b,
        });
      }
    }
  } finally {
    tf.dispose([x, y]);
  }
  return report;
}

export function renderCost(r: CostReport): string {
  const s = r.settings;
  const lines = [
    `# Attack cost per image, preset ${r.preset} (PGD-${s.pgdSteps}, APGD-CE-${s.apgdSteps}, Square ${s.squareQueries}; EOT-${s.eot}, ${s.draws} judging draws for randomized defences)`,
    '',
    `Measured on ${r.machine}, batch ${r.batchSize}, one thread; worst case (no image broken early), so an upper bound.`,
    '',
    '| defence | attack | gradients | forwards | s/image (wall) | s/image (CPU) |',
    '|---|---|---|---|---|---|',
    ...r.rows.map((c) => `| ${c.defense} | ${c.attack} | ${c.gradients} | ${c.forwards} | ${c.secondsPerImage.toFixed(2)} | ${c.cpuSecondsPerImage.toFixed(2)} |`),
  ];
  return lines.join('\n') + '\n';
}
