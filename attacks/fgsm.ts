/**
 * Fast Gradient Sign Method (Goodfellow et al. 2015): one L-inf step,
 * x_adv = clip(x + eps * sign(grad_x loss(f(x), y)), 0, 1).
 */
import { tf, type Tensor4D } from '../src/backend/index.js';
import { asModel, labelTensor, misclassified, Outcome, project, rows, toLabels } from './common.js';
import type { AttackResult, Labels, LossName, Target } from './common.js';

export interface FgsmOptions {
  /** L-inf radius in pixel units of [0,1]. */
  eps: number;
  loss?: LossName; // default 'ce'
}

/** Attacks the clean-correct rows; clean errors are returned unchanged (already fooled). */
export function fgsm(target: Target, x: Tensor4D, y: Labels, opts: FgsmOptions): AttackResult {
  const model = asModel(target);
  const out = new Outcome(model, x, toLabels(y, x.shape[0]));
  const idx = out.remaining();
  if (idx.length > 0) {
    tf.tidy(() => {
      const x0 = rows(x, idx);
      const ySub = labelTensor(out.y, idx);
      const { grad } = model.lossGrad(x0, ySub, opts.loss ?? 'ce');
      const xAdv = project('Linf', x0, tf.add(x0, tf.mul(opts.eps, tf.sign(grad))) as Tensor4D, opts.eps);
      const wrong = misclassified(model.logits(xAdv), Array.from(idx, (i) => out.y[i]));
      out.count(idx, 2);
      out.recordFooled(idx, xAdv, wrong);
      out.offerBest(idx, xAdv, new Float64Array(idx.length)); // the single step is the answer either way
    });
  }
  return out.result();
}
