/**
 * Robust accuracy under an ensemble of attacks, in the spirit of AutoAttack (Croce & Hein 2020):
 * the attacks run in order, each on the examples no earlier attack has broken; an example is robust
 * only if it survives every attack. Against a randomized defence the attacker may resubmit the same
 * image: we report accuracy on one fresh draw and on the worst of k fresh draws (robust only if the
 * image is classified correctly every time). Candidates are judged on draws separate from the final
 * ones, so picking the best candidate does not bias the reported numbers.
 */
import { tf, type Tensor4D } from '../src/backend/index.js';
import { asModel, BOUND_TOLERANCE, misclassified, perturbationNorms, rows, toLabels } from './common.js';
import type { AttackModel, AttackResult, Labels, Norm, Target } from './common.js';

export interface NamedAttack {
  name: string;
  run(model: AttackModel, x: Tensor4D, y: Int32Array): AttackResult;
}

export interface EnsembleOptions {
  attacks: NamedAttack[];
  /** Resubmissions k of each adversarial image (default 10 for randomized models, 1 otherwise). */
  draws?: number;
  /** If given, every adversarial image is checked against it; a violation throws (an attack bug, not robustness). */
  threat?: { norm: Norm; eps: number };
}

export interface EnsembleReport {
  n: number;
  draws: number;
  cleanAccuracy: number; // one draw
  robustAccuracy: number; // one fresh draw of the final adversarial images
  robustAccuracyWorstOfK: number; // correct on all k fresh draws
  robust: Uint8Array; // per example, one draw
  robustAllDraws: Uint8Array; // per example, all k draws
  perAttack: { name: string; attacked: number; broken: number; seconds: number }[];
  /** The adversarial image kept for each example (x itself where the clean image is misclassified). */
  xAdv: Tensor4D;
}

/** How many of k fresh draws classify each row of x correctly. */
function correctDraws(model: AttackModel, x: Tensor4D, y: ArrayLike<number>, k: number): Int32Array {
  const count = new Int32Array(x.shape[0]);
  for (let d = 0; d < k; d++) {
    const wrong = tf.tidy(() => misclassified(model.logits(x), y));
    wrong.forEach((w, i) => (count[i] += 1 - w));
  }
  return count;
}

export function runEnsemble(target: Target, x: Tensor4D, y: Labels, opts: EnsembleOptions): EnsembleReport {
  const model = asModel(target);
  const n = x.shape[0];
  const size = x.size / n;
  const labels = toLabels(y, n);
  const k = opts.draws ?? (model.randomized ? 10 : 1);
  const xs = x.dataSync();
  const best = Float32Array.from(xs);
  const clean = correctDraws(model, x, labels, 1);
  // Fewest correct draws among the candidates kept so far (k + 1: none yet).
  const bestCorrect = Int32Array.from(clean, (c) => (c ? k + 1 : 0));
  const perAttack: EnsembleReport['perAttack'] = [];

  for (const attack of opts.attacks) {
    const idx = [...bestCorrect.keys()].filter((i) => bestCorrect[i] > 0);
    if (idx.length === 0) break;
    const t0 = performance.now();
    const xSub = rows(x, idx);
    const ySub = Int32Array.from(idx, (i) => labels[i]);
    const res = attack.run(model, xSub, ySub);
    const adv = res.xAdv.dataSync();
    if (opts.threat) {
      const norms = perturbationNorms(opts.threat.norm, xSub, res.xAdv, idx.length);
      const bad = norms.findIndex((v) => v > opts.threat!.eps + BOUND_TOLERANCE);
      if (bad >= 0 || adv.some((v) => !(v >= 0 && v <= 1))) {
        tf.dispose([xSub, res.xAdv]);
        throw new Error(`attack ${attack.name} left the threat model (example ${bad >= 0 ? idx[bad] : '?'})`);
      }
    }
    const correct = correctDraws(model, res.xAdv, ySub, k);
    let broken = 0;
    idx.forEach((i, r) => {
      if (correct[r] < bestCorrect[i]) {
        bestCorrect[i] = correct[r];
        best.set(adv.subarray(r * size, (r + 1) * size), i * size);
        if (correct[r] === 0) broken++;
      }
    });
    tf.dispose([xSub, res.xAdv]);
    perAttack.push({ name: attack.name, attacked: idx.length, broken, seconds: (performance.now() - t0) / 1000 });
  }

  const xAdv = tf.tensor4d(best, x.shape);
  const robust = new Uint8Array(n);
  const robustAllDraws = new Uint8Array(n);
  for (let d = 0; d < k; d++) {
    const wrong = tf.tidy(() => misclassified(model.logits(xAdv), labels));
    wrong.forEach((w, i) => {
      const ok = clean[i] === 1 && w === 0;
      if (d === 0) {
        robust[i] = ok ? 1 : 0;
        robustAllDraws[i] = robust[i];
      } else if (!ok) robustAllDraws[i] = 0;
    });
  }
  const mean = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0) / n;
  return {
    n,
    draws: k,
    cleanAccuracy: mean(clean),
    robustAccuracy: mean(robust),
    robustAccuracyWorstOfK: mean(robustAllDraws),
    robust,
    robustAllDraws,
    perAttack,
    xAdv,
  };
}
