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
  return ascend(lossOf, x0, randomStart(norm, x0, o.eps, Math.floor(rng() * 2 ** 31)), norm, alpha, o.eps, o.steps);
}

/** `steps` steepest-ascent steps of size alpha on lossOf from `start` (consumed), each projected to the eps-ball of x0 and [0,1]. */
function ascend(lossOf: (x: tf.Tensor) => tf.Tensor, x0: Tensor4D, start: Tensor4D, norm: Norm, alpha: number, eps: number, steps: number): Tensor4D {
  let x = start;
  for (let t = 0; t < steps; t++) {
    const next = tf.tidy(() => {
      const g = tf.grad(lossOf)(x) as Tensor4D;
      return project(norm, x0, tf.add(x, tf.mul(alpha, ascentDirection(norm, g))) as Tensor4D, eps);
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

/**
 * SmoothAdv (Salman et al. 2019, "Provably robust deep learning via adversarially trained smoothed classifiers"):
 * adversarial training of the smoothed classifier for randomized smoothing. Each image gets `draws` Gaussian noise
 * vectors, fixed for the attack; PGD in L2 from x itself (no random start), step 2 eps / k, maximises the cross-entropy
 * of the *mean* softmax over the noisy copies, -log((1/m) sum_i softmax_y(f(x' + delta_i))), and the network is then
 * trained on x' + delta_i, the same noise (the trainer adds it with the seed it hands to perturb). eps grows linearly
 * over the first `warmupEpochs` epochs (Salman et al.: 10 of 90), which the trainer then never keeps. With consistency
 * regularization on top this is the "SmoothAdv + consistency" of Jeong & Shin 2020, their best MNIST rows (eps 1.0,
 * PGD-10, 4 draws, lambda 5).
 *
 *   advpurify train classifier --dataset mnist --noise-sigma 0.5 --smooth-adv 1 --adv-steps 10 --noise-draws 4 [--adv-warmup 10] [--consistency 5]
 */
export interface SmoothAdvOptions {
  eps: number; // L2 radius in pixel units of [0, 1]
  steps: number; // k
  draws: number; // noise vectors per image, m
  warmupEpochs?: number; // default 1: full eps from the first epoch
  seed?: number; // recorded in the weights' meta
}

/**
 * The final PGD iterate against the smoothed soft classifier. `noise` holds the `draws` noise copies of the batch as
 * consecutive blocks ([draws * B, H, W, C], copy d of image i at row d * B + i: the trainer's tiling).
 */
export function smoothAdvExample(f: (x: Tensor4D) => Tensor2D, x0: Tensor4D, y: Tensor1D, noise: Tensor4D, eps: number, steps: number): Tensor4D {
  const b = x0.shape[0];
  const draws = noise.shape[0] / b;
  if (!Number.isInteger(draws) || draws < 1) throw new RangeError(`smoothAdvExample: ${noise.shape[0]} noise rows are not copies of ${b} images`);
  if (!(eps > 0)) return x0.clone();
  const alpha = (2 * eps) / steps;
  // -sum_i log mean_d softmax_y(f(x_i + delta_di)) = -sum_i (logsumexp_d log softmax_y - log m): stable where p_y -> 1
  const lossOf = (x: tf.Tensor) => tf.tidy(() => {
    const logits = f(tf.add(tf.tile(x, [draws, 1, 1, 1]), noise) as Tensor4D);
    const logp = tf.logSoftmax(logits);
    const k = logits.shape[1];
    const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tile(y, [draws]), k)), 1).reshape([draws, b]);
    return tf.neg(tf.sum(tf.sub(tf.logSumExp(picked, 0), Math.log(draws))));
  });
  return ascend(lossOf, x0, x0.clone(), 'L2', alpha, eps, steps);
}

/** The `adversary` of trainClassifier for SmoothAdv (needs the trainer's noiseSigma); validated by ACR, not by an attack. */
export function smoothAdvAdversary(o: SmoothAdvOptions): BatchAdversary {
  if (!(o.eps > 0) || !Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`SmoothAdv needs eps > 0 and steps >= 1, got eps ${o.eps}, steps ${o.steps}`);
  if (!(Number.isInteger(o.draws) && o.draws >= 1)) throw new RangeError(`SmoothAdv needs an integer number of noise draws >= 1, got ${o.draws}`);
  const warmup = o.warmupEpochs ?? 1;
  if (!(Number.isInteger(warmup) && warmup >= 1)) throw new RangeError(`SmoothAdv's warm-up is a whole number of epochs >= 1, got ${warmup}`);
  return {
    method: 'smoothadv-pgd',
    norm: 'L2',
    eps: o.eps,
    steps: o.steps,
    stepSize: `2 eps / ${o.steps}`,
    warmupEpochs: warmup,
    noiseDraws: o.draws,
    perturb: (x, y, model, _seed, ctx) => {
      if (!ctx?.noiseSigma) throw new RangeError('SmoothAdv attacks the smoothed classifier: train with noiseSigma');
      if (ctx.draws !== o.draws) throw new RangeError(`SmoothAdv was built for ${o.draws} noise draws, the trainer uses ${ctx.draws}`);
      const eps = o.eps * Math.min(1, (ctx.epoch + 1) / warmup);
      return tf.tidy(() => {
        const [b, h, w, c] = x.shape;
        const noise = tf.randomNormal([o.draws * b, h, w, c], 0, ctx.noiseSigma, 'float32', ctx.noiseSeed) as Tensor4D;
        return smoothAdvExample(trainingLogits(model), x, y, noise, eps, o.steps);
      });
    },
  };
}
