/**
 * Projected gradient descent (Madry et al. 2018) under L-inf or L2:
 *   x_{t+1} = P_{B(x, eps) ∩ [0,1]^d}(x_t + alpha_t * u(grad loss(x_t))),  u = sign (L-inf) or g/||g||_2 (L2),
 * from a uniform random start in the ball, with restarts. Returns, per example, the first misclassified
 * iterate found (any is a valid adversarial); for examples never fooled, the highest-loss iterate.
 */
import { tf, type Tensor1D, type Tensor4D } from '../src/backend/index.js';
import { mulberry32 } from '../src/util/rng.js';
import {
  ascentDirection,
  asModel,
  labelTensor,
  misclassified,
  nextSeed,
  Outcome,
  perExampleLoss,
  project,
  randomStart,
  rows,
  toLabels,
} from './common.js';
import type { AttackModel, AttackResult, Labels, LossName, Norm, Target } from './common.js';

/** Step-size multiplier over the run: t = 0..steps-1. */
export type StepSchedule = 'constant' | 'cosine' | 'halving' | ((t: number, steps: number) => number);

export interface PgdOptions {
  norm?: Norm; // default 'Linf'
  eps: number;
  steps?: number; // default 40
  /** Base step alpha; default 2.5 * eps / steps (Madry et al.). */
  stepSize?: number;
  schedule?: StepSchedule; // default 'constant'
  restarts?: number; // default 1; each restart attacks only examples not fooled yet
  randomStart?: boolean; // default true
  loss?: LossName; // default 'ce'
  seed?: number; // default 0
  /** Drop fooled examples from the batch as soon as they are fooled (default true). */
  earlyStop?: boolean;
}

export function stepMultiplier(schedule: StepSchedule, t: number, steps: number): number {
  if (typeof schedule === 'function') return schedule(t, steps);
  if (schedule === 'cosine') return 0.5 * (1 + Math.cos((Math.PI * t) / steps));
  if (schedule === 'halving') return t < steps / 2 ? 1 : t < (3 * steps) / 4 ? 0.5 : 0.25;
  return 1;
}

export function pgd(target: Target, x: Tensor4D, y: Labels, opts: PgdOptions): AttackResult {
  const model = asModel(target);
  const out = new Outcome(model, x, toLabels(y, x.shape[0]));
  const rng = mulberry32(opts.seed ?? 0);
  const restarts = opts.restarts ?? 1;
  for (let r = 0; r < restarts; r++) {
    const idx = out.remaining();
    if (idx.length === 0) break;
    const startSeed = nextSeed(rng);
    pgdRun(model, out, idx, opts, startSeed);
  }
  return out.result();
}

/** One restart on rows idx of the batch. */
function pgdRun(model: AttackModel, out: Outcome, idx0: number[], opts: PgdOptions, seed: number): void {
  const norm = opts.norm ?? 'Linf';
  const steps = opts.steps ?? 40;
  const alpha = opts.stepSize ?? (2.5 * opts.eps) / steps;
  const loss = opts.loss ?? 'ce';
  const earlyStop = opts.earlyStop ?? true;
  let idx = idx0;
  let x0 = rows(out.x, idx);
  let y = labelTensor(out.y, idx);
  let xCur = opts.randomStart === false ? x0.clone() : randomStart(norm, x0, opts.eps, seed);
  const dispose = () => tf.dispose([x0, y, xCur]);

  for (let t = 0; t < steps; t++) {
    const g = model.lossGrad(xCur, y, loss);
    out.count(idx);
    const wrong = misclassified(g.logits, Array.from(idx, (i) => out.y[i]));
    out.recordFooled(idx, xCur, wrong);
    out.offerBest(idx, xCur, g.loss.dataSync());
    g.loss.dispose();
    g.logits.dispose();
    let grad = g.grad;
    if (earlyStop && wrong.some((w) => w)) {
      const keep = [...wrong.keys()].filter((r) => !wrong[r]);
      const next = [x0, y, xCur, grad].map((tensor) => rows(tensor, keep));
      tf.dispose([x0, y, xCur, grad]);
      [x0, y, xCur, grad] = next as [Tensor4D, Tensor1D, Tensor4D, Tensor4D];
      idx = keep.map((r) => idx[r]);
      if (idx.length === 0) {
        grad.dispose();
        break;
      }
    }
    const step = alpha * stepMultiplier(opts.schedule ?? 'constant', t, steps);
    const xNext = tf.tidy(() => project(norm, x0, tf.add(xCur, tf.mul(step, ascentDirection(norm, grad))) as Tensor4D, opts.eps));
    tf.dispose([xCur, grad]);
    xCur = xNext;
  }
  if (idx.length > 0) {
    // The last iterate has not been looked at yet: one forward pass.
    tf.tidy(() => {
      const logits = model.logits(xCur);
      out.count(idx);
      out.recordFooled(idx, xCur, misclassified(logits, Array.from(idx, (i) => out.y[i])));
      out.offerBest(idx, xCur, perExampleLoss(loss, logits, y).dataSync());
    });
  }
  dispose();
}
