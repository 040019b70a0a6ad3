/**
 * Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
 * diverse parameter-free attacks"), Algorithm 1:
 *   z_{k+1} = P(x_k + eta * u(grad f(x_k)))
 *   x_{k+1} = P(x_k + alpha (z_{k+1} - x_k) + (1 - alpha)(x_k - x_{k-1})),  alpha = 0.75 (1 at k = 0),
 * eta_0 = 2 eps. At checkpoints w_j = ceil(p_j N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
 * eta is halved and the iterate restarts from x_max (the best point so far) when
 *   (1) the loss increased in fewer than rho = 0.75 of the steps since w_{j-1}, or
 *   (2) eta was not reduced at w_{j-1} and f_max did not improve since w_{j-1}.
 * Per example: first misclassified iterate, else x_max. L-inf per the paper; L2 with u = g/||g||_2.
 */
import { tf, type Tensor1D, type Tensor4D } from '../src/backend/index.js';
import { mulberry32 } from '../src/util/rng.js';
import { ascentDirection, asModel, labelTensor, misclassified, nextSeed, Outcome, project, randomStart, rowMask, rows, toLabels } from './common.js';
import type { AttackModel, AttackResult, Labels, LossName, Norm, Target } from './common.js';

export interface ApgdOptions {
  norm?: Norm; // default 'Linf'
  eps: number;
  steps?: number; // N, default 100
  restarts?: number; // default 1
  loss?: LossName; // default 'ce' (APGD-CE); 'dlr' gives APGD-DLR
  seed?: number; // default 0
  /** Drop fooled examples from the batch as soon as they are fooled (default true). */
  earlyStop?: boolean;
}

const MOMENTUM = 0.75;
const RHO = 0.75;

/** Iterations after which step size is reconsidered: w_1 < w_2 < ... <= N. */
export function apgdCheckpoints(steps: number): number[] {
  const p = [0, 0.22];
  while (p[p.length - 1] < 1) {
    const j = p.length - 1;
    p.push(p[j] + Math.max(p[j] - p[j - 1] - 0.03, 0.06));
  }
  const w = p.slice(1).map((q) => Math.ceil(q * steps - 1e-9)).filter((v) => v <= steps && v > 0);
  return [...new Set(w)];
}

export function apgd(target: Target, x: Tensor4D, y: Labels, opts: ApgdOptions): AttackResult {
  const model = asModel(target);
  const out = new Outcome(model, x, toLabels(y, x.shape[0]));
  const rng = mulberry32(opts.seed ?? 0);
  for (let r = 0; r < (opts.restarts ?? 1); r++) {
    const idx = out.remaining();
    if (idx.length === 0) break;
    apgdRun(model, out, idx, opts, nextSeed(rng));
  }
  return out.result();
}

interface Images {
  x0: Tensor4D;
  x: Tensor4D; // x_k
  xPrev: Tensor4D; // x_{k-1}
  grad: Tensor4D;
  xBest: Tensor4D; // x_max
  gradBest: Tensor4D;
  y: Tensor1D;
}
interface Scalars {
  eta: number;
  lossPrev: number;
  lossBest: number;
  increases: number; // steps since the last checkpoint where the loss went up
  lossBestAtCheck: number;
  reducedAtCheck: boolean;
}

function apgdRun(model: AttackModel, out: Outcome, idx0: number[], opts: ApgdOptions, seed: number): void {
  const norm = opts.norm ?? 'Linf';
  const steps = opts.steps ?? 100;
  const lossName = opts.loss ?? 'ce';
  const checkpoints = new Set(apgdCheckpoints(steps));
  let idx = idx0;
  const labelsOf = () => Array.from(idx, (i) => out.y[i]);

  // Evaluate f and grad f at img.x; record fooled rows; returns the losses.
  const evaluate = (img: Images): { loss: Float32Array; wrong: Uint8Array; grad: Tensor4D } => {
    const g = model.lossGrad(img.x, img.y, lossName);
    out.count(idx);
    const loss = g.loss.dataSync() as Float32Array;
    const wrong = misclassified(g.logits, labelsOf());
    out.recordFooled(idx, img.x, wrong);
    tf.dispose([g.loss, g.logits]);
    return { loss, wrong, grad: g.grad };
  };

  const x0 = rows(out.x, idx);
  const xStart = opts.eps > 0 ? randomStart(norm, x0, opts.eps, seed) : x0.clone();
  let img: Images = { x0, x: xStart, xPrev: xStart.clone(), grad: xStart, xBest: xStart.clone(), gradBest: xStart, y: labelTensor(out.y, idx) };
  const first = evaluate(img);
  img = { ...img, grad: first.grad, gradBest: first.grad.clone() };
  let s: Scalars[] = Array.from(first.loss, (l) => ({ eta: 2 * opts.eps, lossPrev: l, lossBest: l, increases: 0, lossBestAtCheck: l, reducedAtCheck: false }));
  let wrong = first.wrong;

  for (let k = 0; k < steps && idx.length > 0; k++) {
    if ((opts.earlyStop ?? true) && wrong.some((w) => w)) {
      const keep = [...wrong.keys()].filter((r) => !wrong[r]);
      const next = Object.fromEntries(Object.entries(img).map(([name, t]) => [name, rows(t, keep)])) as unknown as Images;
      tf.dispose(Object.values(img));
      img = next;
      s = keep.map((r) => s[r]);
      idx = keep.map((r) => idx[r]);
      if (idx.length === 0) break;
    }
    const a = k === 0 ? 1 : MOMENTUM;
    const etas = tf.tensor4d(Float32Array.from(s, (v) => v.eta), [s.length, 1, 1, 1]);
    const xNext = tf.tidy(() => {
      const z = project(norm, img.x0, tf.add(img.x, tf.mul(etas, ascentDirection(norm, img.grad))) as Tensor4D, opts.eps);
      const moved = tf.add(tf.add(img.x, tf.mul(a, tf.sub(z, img.x))), tf.mul(1 - a, tf.sub(img.x, img.xPrev)));
      return project(norm, img.x0, moved as Tensor4D, opts.eps);
    });
    etas.dispose();
    tf.dispose([img.xPrev, img.grad]);
    img = { ...img, xPrev: img.x, x: xNext };
    const e = evaluate(img);
    img.grad = e.grad;
    wrong = e.wrong;

    const improved = s.map((v, r) => e.loss[r] > v.lossBest);
    s.forEach((v, r) => {
      if (e.loss[r] > v.lossPrev) v.increases++;
      v.lossPrev = e.loss[r];
      if (improved[r]) v.lossBest = e.loss[r];
    });
    img = swapWhere(img, improved, { xBest: img.x, gradBest: img.grad });

    if (checkpoints.has(k + 1)) {
      const reduce = s.map((v) => {
        const fewIncreases = v.increases < RHO * intervalLength(checkpoints, k + 1);
        const stalled = !v.reducedAtCheck && v.lossBestAtCheck === v.lossBest;
        return fewIncreases || stalled;
      });
      s.forEach((v, r) => {
        if (reduce[r]) v.eta /= 2;
        v.reducedAtCheck = reduce[r];
        v.lossBestAtCheck = v.lossBest;
        v.increases = 0;
      });
      // Restart from x_max; the loss there is f_max, the reference for the next increase.
      s.forEach((v, r) => reduce[r] && (v.lossPrev = v.lossBest));
      img = swapWhere(img, reduce, { x: img.xBest, grad: img.gradBest });
    }
  }
  if (idx.length > 0) {
    out.offerBest(idx, img.xBest, Float64Array.from(s, (v) => v.lossBest));
  }
  tf.dispose(Object.values(img));
}

/** Number of iterations between checkpoint w and the checkpoint before it (w_0 = 0). */
function intervalLength(checkpoints: Set<number>, w: number): number {
  let prev = 0;
  for (const c of checkpoints) if (c < w) prev = Math.max(prev, c);
  return w - prev;
}

/** img[name] := where(flag, from[name], img[name]) for each named image; disposes the replaced tensors. */
function swapWhere(img: Images, flags: boolean[], from: Partial<Record<keyof Images, Tensor4D>>): Images {
  if (!flags.some((f) => f)) return img;
  const mask = rowMask(flags);
  const next = { ...img };
  for (const [name, src] of Object.entries(from) as [keyof Images, Tensor4D][]) {
    const old = img[name] as Tensor4D;
    (next as Record<string, Tensor4D | Tensor1D>)[name] = tf.where(mask, src, old);
    old.dispose();
  }
  mask.dispose();
  return next;
}
