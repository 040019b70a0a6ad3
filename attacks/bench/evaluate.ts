/**
 * One batch of images against one defence: the clean pass, then each attack in turn on the images no
 * earlier attack has broken (as in AutoAttack), each adversarial image judged on k fresh draws of the
 * defence. An image counts as robust on one draw if it was classified correctly clean and every attack's
 * image was classified correctly on its first fresh draw; worst-of-k: on all k draws of every attack.
 */
import { tf, type Tensor4D } from '../../src/backend/index.js';
import { BOUND_TOLERANCE, misclassified, perturbationNorms, rows, type AttackModel, type Norm } from '../common.js';
import type { NamedAttack } from '../ensemble.js';

/** One logged image: what the per-defence JSONL log holds, one line each. */
export interface ImageRow {
  eps: number;
  index: number; // index in the split
  label: number;
  clean: 0 | 1; // classified correctly on one draw
  /** per attack: 1/0 per fresh draw (correct/fooled) of its adversarial image; null = not run (already broken) */
  attacks: Record<string, number[] | null>;
  /** per attack: seconds spent on this image (batch time / images attacked) */
  seconds: Record<string, number>;
}

/** 1 where each of `draws` fresh draws classifies x's rows correctly, per row: [row][draw]. */
function drawFlags(model: AttackModel, x: Tensor4D, y: Int32Array, draws: number): number[][] {
  const flags = Array.from({ length: y.length }, () => new Array<number>(draws).fill(0));
  for (let d = 0; d < draws; d++) {
    const wrong = tf.tidy(() => misclassified(model.logits(x), y));
    wrong.forEach((w, r) => (flags[r][d] = 1 - w));
  }
  return flags;
}

/** Stops the run when an attack leaves the threat model: that is a bug, never robustness. */
function checkThreat(name: string, norm: Norm, eps: number, x: Tensor4D, xAdv: Tensor4D, n: number): void {
  const norms = perturbationNorms(norm, x, xAdv, n);
  const bad = norms.findIndex((v) => !(v <= eps + BOUND_TOLERANCE));
  const outside = xAdv.dataSync().some((v) => !(v >= 0 && v <= 1));
  if (bad >= 0 || outside) throw new Error(`attack ${name} left the threat model (${norm} eps ${eps}: ${bad >= 0 ? `norm ${norms[bad]}` : 'pixel outside [0,1]'})`);
}

export interface BatchSpec {
  model: AttackModel;
  x: Tensor4D; // the batch's images
  labels: Int32Array;
  indices: readonly number[]; // their indices in the split
  eps: number;
  norm: Norm;
  attacks: NamedAttack[];
  draws: number;
}

export function attackBatch(b: BatchSpec): ImageRow[] {
  const clean = drawFlags(b.model, b.x, b.labels, 1).map((f) => f[0] as 0 | 1);
  const out: ImageRow[] = b.indices.map((index, r) => ({ eps: b.eps, index, label: b.labels[r], clean: clean[r], attacks: {}, seconds: {} }));
  const alive = clean.map((c) => c === 1);
  for (const attack of b.attacks) {
    const idx = [...alive.keys()].filter((r) => alive[r]);
    out.forEach((row) => (row.attacks[attack.name] = null));
    if (idx.length === 0) continue;
    const t0 = performance.now();
    const xSub = rows(b.x, idx);
    const ySub = Int32Array.from(idx, (r) => b.labels[r]);
    const res = attack.run(b.model, xSub, ySub);
    try {
      checkThreat(attack.name, b.norm, b.eps, xSub, res.xAdv, idx.length);
      const flags = drawFlags(b.model, res.xAdv, ySub, b.draws);
      const seconds = (performance.now() - t0) / 1000 / idx.length;
      idx.forEach((r, j) => {
        out[r].attacks[attack.name] = flags[j];
        out[r].seconds[attack.name] = seconds;
        if (flags[j][0] === 0) alive[r] = false;
      });
    } finally {
      tf.dispose([xSub, res.xAdv]);
    }
  }
  return out;
}
