/**
 * Square Attack, L-inf (Andriushchenko et al. 2020): score-based black-box random search.
 * Start from vertical stripes x + eps * (±1 per column and channel); each iteration proposes, per
 * example, a random s x s window set to x + eps * (±1 per channel) and keeps it if the margin loss
 * z_y - max_{j!=y} z_j decreases. The window side shrinks with the schedule p(i) (p_init halved at
 * 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000 rescaled iterations), s = round(sqrt(p H W)).
 * Uses only logits, never gradients: robustness it breaks that gradient attacks do not is the
 * signature of gradient masking.
 */
import { readTidy, tf, type Tensor4D } from '../src/backend/index.js';
import { mulberry32, type Rng } from '../src/util/rng.js';
import { asModel, Outcome, toLabels } from './common.js';
import type { AttackModel, AttackResult, Labels, Target } from './common.js';

export interface SquareOptions {
  /** L-inf radius in pixel units of [0,1]. */
  eps: number;
  /** Query budget per example, the stripe initialisation included (default 1000). */
  queries?: number;
  /** Initial fraction of pixels in the window (default 0.8, AutoAttack's value). */
  pInit?: number;
  seed?: number; // default 0
}

/** Window fraction at iteration i of n (the paper's schedule, written for 10,000 iterations). */
export function squareFraction(pInit: number, i: number, n: number): number {
  const it = Math.floor((i / n) * 10000);
  const bounds = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000];
  let p = pInit;
  for (const b of bounds) if (it > b) p /= 2;
  return p;
}

interface Scores {
  margin: Float32Array;
  wrong: Uint8Array;
}

/** Margin z_y - max_{j!=y} z_j and misclassification of candidate images (rows of `data`). */
function score(model: AttackModel, data: Float32Array, shape: [number, number, number], labels: Int32Array): Scores {
  const n = labels.length;
  const z = readTidy(() => model.logits(tf.tensor4d(data, [n, ...shape])));
  const classes = z.length / n;
  const margin = new Float32Array(n);
  const wrong = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let other = -Infinity;
    let arg = 0;
    for (let c = 0; c < classes; c++) {
      const v = z[i * classes + c];
      if (v > z[i * classes + arg]) arg = c;
      if (c !== labels[i] && v > other) other = v;
    }
    margin[i] = z[i * classes + labels[i]] - other;
    wrong[i] = arg !== labels[i] ? 1 : 0;
  }
  return { margin, wrong };
}

const clip01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
const sign = (rng: Rng) => (rng() < 0.5 ? -1 : 1);

export function square(target: Target, x: Tensor4D, y: Labels, opts: SquareOptions): AttackResult {
  const model = asModel(target);
  const out = new Outcome(model, x, toLabels(y, x.shape[0]));
  const rng = mulberry32(opts.seed ?? 0);
  const budget = opts.queries ?? 1000;
  const pInit = opts.pInit ?? 0.8;
  const [, h, w, c] = x.shape;
  const size = h * w * c;
  const xs = out.xAdv; // the clean images (Outcome starts from x)
  const idx = out.remaining();
  const m = idx.length;
  if (m === 0 || budget < 1) return out.result();

  // Vertical stripes: one sign per (example, column, channel).
  const best = new Float32Array(m * size);
  idx.forEach((i, r) => {
    for (let col = 0; col < w; col++) {
      for (let ch = 0; ch < c; ch++) {
        const d = opts.eps * sign(rng);
        for (let row = 0; row < h; row++) {
          const p = (row * w + col) * c + ch;
          best[r * size + p] = clip01(xs[i * size + p] + d);
        }
      }
    }
  });
  const labels = Int32Array.from(idx, (i) => out.y[i]);
  const init = score(model, best, [h, w, c], labels);
  out.count(idx);
  const marginBest = init.margin;
  const fooled = init.wrong;

  for (let it = 1; it < budget; it++) {
    const active = [...fooled.keys()].filter((r) => !fooled[r]);
    if (active.length === 0) break;
    const side = Math.min(Math.max(Math.round(Math.sqrt(squareFraction(pInit, it, budget) * h * w)), 1), Math.min(h, w) - 1);
    const cand = new Float32Array(active.length * size);
    active.forEach((r, a) => {
      const i = idx[r];
      cand.set(best.subarray(r * size, (r + 1) * size), a * size);
      const top = Math.floor(rng() * (h - side));
      const left = Math.floor(rng() * (w - side));
      // Redraw the window's signs until the proposal differs from the current best (as in the reference code).
      for (let tries = 0; tries < 100; tries++) {
        let changed = false;
        for (let ch = 0; ch < c; ch++) {
          const d = opts.eps * sign(rng);
          for (let row = top; row < top + side; row++) {
            for (let col = left; col < left + side; col++) {
              const p = (row * w + col) * c + ch;
              const v = clip01(xs[i * size + p] + d);
              cand[a * size + p] = v;
              if (Math.abs(v - best[r * size + p]) >= 1e-7) changed = true;
            }
          }
        }
        if (changed) break;
      }
    });
    const sc = score(model, cand, [h, w, c], Int32Array.from(active, (r) => labels[r]));
    out.count(active.map((r) => idx[r]));
    active.forEach((r, a) => {
      if (sc.margin[a] < marginBest[r]) {
        marginBest[r] = sc.margin[a];
        fooled[r] = sc.wrong[a];
        best.set(cand.subarray(a * size, (a + 1) * size), r * size);
      }
    });
  }

  // Fooled rows first (recordFooled), then the lowest-margin point for the rest.
  tf.tidy(() => out.recordFooled(idx, tf.tensor4d(best, [m, h, w, c]), fooled));
  out.offerBest(idx, best, Float64Array.from(marginBest, (v) => -v));
  return out.result();
}
