/**
 * Adaptive attacks on purifier + classifier pipelines (Athalye et al. 2018; Tramèr et al. 2020):
 *  - EOT: the gradient of E_r[loss(f(purify(x; r)))] estimated by averaging k draws of the defence's randomness;
 *  - full gradient: tf autodiff through the defence's forward pass (exact, memory-hungry for long purifiers);
 *  - BPDA: forward through the defence, backward as the identity (purify(x) ≈ x), for defences whose
 *    gradient is unavailable or uninformative.
 * The result is an AttackModel, so every attack in attacks/ runs against it unchanged.
 */
import { tf, type Tensor1D, type Tensor2D, type Tensor4D } from '../src/backend/index.js';
import type { LogitsFn } from '../src/types.js';
import { mulberry32 } from '../src/util/rng.js';
import { autodiffLossGrad, nextSeed } from './common.js';

/** Images per tape when differentiating through a purifier (see autodiffLossGrad). */
export const MAX_GRAD_BATCH = 16;
import type { AttackModel, LossGrad, LossName } from './common.js';

/** A purifier: images in [0,1] -> purified images in [0,1], as differentiable tf ops. */
export interface Defense {
  /** `seed` fixes the defence's randomness (ignored by deterministic defences); the caller disposes. */
  forward(x: Tensor4D, seed?: number): Tensor4D;
  readonly randomized: boolean;
}

/**
 * How gradients cross the defence. A 'checkpointed' mode (recompute segments of a long purifier in the
 * backward pass instead of keeping every activation) would slot in here as a third option.
 */
export type DefenseGradient = 'full' | 'bpda';

export interface AdaptiveOptions {
  /** EOT draws per gradient (default 10 for randomized defences, 1 otherwise). */
  eot?: number;
  gradient?: DefenseGradient; // default 'full'
  /** Seeds the stream of defence draws (default 0); every call consumes fresh draws. */
  seed?: number;
  /**
   * The defence as deployed with `draws: k` (`ImagePurifier.classify`): k purifications, each classified,
   * majority-voted with ties broken by the mean probability. Attacks differentiate the log of the mean
   * softmax over the k draws (the smooth surrogate of the vote, every draw's full gradient); `logits`
   * returns scores whose argmax is the vote. Default 1 (one draw, the plain composition).
   */
  votes?: number;
}

/** log(mean_j softmax(z_j)) over k logits [N, C]: the differentiable surrogate of a k-draw vote. */
export function logMeanSoftmax(z: readonly Tensor2D[]): Tensor2D {
  return tf.tidy(() => tf.sub(tf.logSumExp(tf.stack(z.map((l) => tf.logSoftmax(l))), 0), Math.log(z.length)) as Tensor2D);
}

/**
 * Scores [N, C] whose argmax is the majority vote of the k draws' argmaxes, ties broken by the mean
 * probability (the deployed rule): 1000 x votes + max(log mean probability, -50). A score-based attack
 * sees both the vote and, between changes of the vote, the mean probability move.
 */
export function voteScores(z: readonly Tensor2D[]): Tensor2D {
  return tf.tidy(() => {
    const classes = z[0].shape[1];
    const votes = tf.addN(z.map((l) => tf.oneHot(tf.argMax(l, -1), classes).toFloat()));
    return tf.add(tf.mul(votes, 1000), tf.maximum(logMeanSoftmax(z), -50)) as Tensor2D;
  });
}

/** Forward = defense.forward(x, seed); backward = identity (dL/dx := dL/d purified). */
export function bpda(defense: Defense, seed?: number): (x: Tensor4D) => Tensor4D {
  const op = tf.customGrad((...args: unknown[]) => ({
    value: defense.forward(args[0] as Tensor4D, seed),
    gradFunc: (dy: tf.Tensor) => dy,
  }));
  return (x) => op(x) as Tensor4D;
}

/**
 * The composition classifier(defense(x)) with one fresh draw of the defence per call, or with `votes` > 1
 * fresh draws voted (voteScores).
 */
export function defended(defense: Defense, classifier: LogitsFn, seed = 0, votes = 1): LogitsFn {
  const rng = mulberry32(seed);
  if (votes === 1) return (x) => tf.tidy(() => classifier(defense.forward(x, nextSeed(rng))));
  return (x) => tf.tidy(() => voteScores(Array.from({ length: votes }, () => classifier(defense.forward(x, nextSeed(rng))))));
}

/** An AttackModel for classifier ∘ defense with EOT over k draws and full or BPDA gradients. */
export function adaptive(defense: Defense, classifier: LogitsFn, opts: AdaptiveOptions = {}): AttackModel {
  const k = opts.eot ?? (defense.randomized ? 10 : 1);
  if (!(k >= 1)) throw new Error(`eot must be >= 1, got ${k}`);
  const votes = opts.votes ?? 1;
  if (!Number.isInteger(votes) || votes < 1) throw new Error(`votes must be an integer >= 1, got ${votes}`);
  const rng = mulberry32(opts.seed ?? 0);
  const through = (seed: number): ((x: Tensor4D) => Tensor4D) =>
    opts.gradient === 'bpda' ? bpda(defense, seed) : (x) => defense.forward(x, seed);
  const oneDraw = (): LossGrad => {
    // one draw of the (voted) defence = `votes` purifications on one tape, in the same row chunks whatever
    // the vote count (so a chunk's noise does not depend on it)
    const purifiers = Array.from({ length: votes }, () => through(nextSeed(rng)));
    const f = votes === 1 ? (x: Tensor4D) => classifier(purifiers[0](x)) : (x: Tensor4D) => logMeanSoftmax(purifiers.map((p) => classifier(p(x))));
    return autodiffLossGrad(f, MAX_GRAD_BATCH);
  };
  const lossGrad: LossGrad = (x: Tensor4D, y: Tensor1D, loss: LossName) => {
    if (k === 1) return oneDraw()(x, y, loss);
    // Running mean, freeing each draw's tensors as soon as they are added (k copies never coexist).
    let sum = oneDraw()(x, y, loss);
    for (let i = 1; i <= k; i++) {
      const d = i < k ? oneDraw()(x, y, loss) : undefined;
      const next = tf.tidy(() =>
        d
          ? { loss: tf.add(sum.loss, d.loss) as Tensor1D, grad: tf.add(sum.grad, d.grad) as Tensor4D, logits: tf.add(sum.logits, d.logits) as Tensor2D }
          : { loss: tf.div(sum.loss, k) as Tensor1D, grad: tf.div(sum.grad, k) as Tensor4D, logits: tf.div(sum.logits, k) as Tensor2D },
      );
      tf.dispose([sum.loss, sum.grad, sum.logits]);
      if (d) tf.dispose([d.loss, d.grad, d.logits]);
      sum = next;
    }
    return sum;
  };
  return {
    logits: defended(defense, classifier, nextSeed(rng), votes),
    lossGrad,
    randomized: defense.randomized,
  };
}
