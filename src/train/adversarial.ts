/**
 * PGD adversarial training (Madry et al. 2018, "Towards deep learning models resistant to adversarial
 * attacks"): minimise E[max_{||d|| <= eps} loss(f(x + d), y)], the inner max approximated on every batch
 * by PGD-k from a uniform random start with step 2.5 eps / k, and the network trained on the PGD
 * output only. The outer loop is `trainClassifier` (Adam, cosine LR, augmentation, BN recalibration,
 * checkpoint/resume); this file supplies its `adversary`.
 *
 *   advpurify train classifier --dataset fashion-mnist --variant classifier-adv --init models/fashion-mnist/classifier
 *     --lr 1e-3 --epochs 2 --adv-eps 0.1 --adv-steps 7   (adversarial fine-tuning of the standard classifier)
 *     -> models/fashion-mnist/classifier-adv.{json,bin}, checkpoint runs/fashion-mnist/classifier-adv.ckpt
 *
 * The attack runs the network as it is trained: batch-norm on batch statistics, dropout off (a
 * deterministic inner maximisation). Cost: k input-gradient passes per step, about (k + 1)x normal training.
 */
import { tf, type Tensor1D, type Tensor2D, type Tensor4D } from '../backend/index.js';
import { ascentDirection, perExampleLoss, project, randomStart, type Norm } from '../../attacks/common.js';
import { mulberry32, type Rng } from '../util/rng.js';
import { trainClassifier, type BatchAdversary, type TrainClassifierOptions, type TrainClassifierResult } from './classifier.js';

export interface PgdTrainingOptions {
  eps: number; // radius in pixel units of [0, 1] (Madry et al. use 0.3 on MNIST; 0.1 suits Fashion-MNIST)
  steps: number; // k
  stepSize?: number; // default 2.5 eps / k
  norm?: Norm; // default 'Linf'
  seed?: number; // recorded in the weights' meta; random starts come from the trainer's per-batch seed
}

/** The network's logits with batch-norm on batch statistics and dropout off. */
export function trainingLogits(model: tf.Sequential): (x: Tensor4D) => Tensor2D {
  return (x) => {
    let h: tf.Tensor = x;
    for (const layer of model.layers) h = layer.apply(h, { training: layer.getClassName() === 'BatchNormalization' }) as tf.Tensor;
    return h as Tensor2D;
  };
}

/** The final PGD-k iterate (not the first misclassified one: training wants the max-loss point). */
export function pgdTrainingExample(f: (x: Tensor4D) => Tensor2D, x0: Tensor4D, y: Tensor1D, o: PgdTrainingOptions, rng: Rng): Tensor4D {
  const norm = o.norm ?? 'Linf';
  const alpha = o.stepSize ?? (2.5 * o.eps) / o.steps;
  const lossOf = (x: tf.Tensor) => tf.sum(perExampleLoss('ce', f(x as Tensor4D), y));
  let x = randomStart(norm, x0, o.eps, Math.floor(rng() * 2 ** 31));
  for (let t = 0; t < o.steps; t++) {
    const next = tf.tidy(() => {
      const g = tf.grad(lossOf)(x) as Tensor4D;
      return project(norm, x0, tf.add(x, tf.mul(alpha, ascentDirection(norm, g))) as Tensor4D, o.eps);
    });
    x.dispose();
    x = next;
  }
  return x;
}

/** The `adversary` of trainClassifier for PGD training; its fields are recorded in the weights' meta. */
export function pgdAdversary(o: PgdTrainingOptions): BatchAdversary {
  if (!(o.eps > 0) || !Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`adversarial training needs eps > 0 and steps >= 1, got eps ${o.eps}, steps ${o.steps}`);
  const norm = o.norm ?? 'Linf';
  const stepSize = o.stepSize ?? (2.5 * o.eps) / o.steps;
  const attack = (f: (x: Tensor4D) => Tensor2D, x: Tensor4D, y: Tensor1D, seed: number) => pgdTrainingExample(f, x, y, { ...o, norm, stepSize }, mulberry32(seed));
  return {
    method: 'pgd-madry',
    norm,
    eps: o.eps,
    steps: o.steps,
    stepSize,
    randomStart: true,
    perturb: (x, y, model, seed) => attack(trainingLogits(model), x, y, seed),
    attack,
  };
}

/** trainClassifier with PGD adversarial training (defaults: eps 0.1, PGD-7). */
export function trainAdversarialClassifier(o: TrainClassifierOptions & { adv?: Partial<PgdTrainingOptions> }): Promise<TrainClassifierResult> {
  const { adv, ...train } = o;
  return trainClassifier({ ...train, adversary: pgdAdversary({ eps: 0.1, steps: 7, seed: o.seed, ...adv }) });
}
