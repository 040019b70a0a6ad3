/**
 * Train the CNN classifier (`advpurify train classifier`). Adam, cosine learning-rate decay,
 * shift/flip augmentation, optional Gaussian-noise augmentation (Cohen et al.'s training for
 * randomized smoothing: `noiseSigma`), optional purification-aware fine-tuning (`purifyAug`: part of each
 * batch replaced by its purified version, so the classifier behind `purify()` sees what the purifier
 * outputs), optional consistency regularization of noise training (`consistency`: Jeong & Shin 2020, for the
 * certification baselines). Checkpoints every epoch; resumes; picks the epoch with the best validation score
 * (validation = a split carved from the training data).
 */
import betaQuantile from '@stdlib/stats-base-dists-beta-quantile';
import normalQuantile from '@stdlib/stats-base-dists-normal-quantile';
import { tf, type Tensor1D, type Tensor4D } from '../backend/index.js';
import { batch, type Dataset, imageSize, loadDataset, take, type DatasetName } from '../data/index.js';
import { buildCnn, CnnClassifier, assignWeights, namedWeights, saveClassifier, type ClassifierMeta } from '../models/classifier.js';
import type { WeightsDtype } from '../models/weights.js';
import type { Rect } from '../purify/patch/box.js';
import { maskSet } from '../purify/patch/patchcleanser.js';
import { loadWeights } from '../models/weights.js';
import { mulberry32, permutation } from '../util/rng.js';
import { fmtLoss, Progress } from '../util/progress.js';
import { yieldToEventLoop } from '../util/yield.js';
import { augmentInto, mirrorKeepsClass } from './augment.js';
import { checkpointExists, loadCheckpoint, saveCheckpoint } from './checkpoint.js';

export interface TrainClassifierOptions {
  dataset: DatasetName;
  out: string; // weights path without suffix
  checkpoint: string;
  /** also checkpoint every this many steps inside an epoch (default 100; 0: only at epoch ends) */
  checkpointEverySteps?: number;
  epochs: number;
  batchSize: number;
  lr: number;
  seed: number;
  noiseSigma?: number; // Gaussian noise augmentation, pixel scale
  widths?: [number, number, number];
  /** Adversarial training (Madry et al. 2018): each batch is replaced by perturb(x, y, model) before the loss. */
  adversary?: BatchAdversary;
  /** Cap on optimizer steps per epoch (default: one pass over the training set); for smoke runs. */
  stepsPerEpoch?: number;
  /**
   * Start from these weights (a saved classifier, path without suffix) instead of a seeded random init,
   * e.g. adversarial fine-tuning of the shipped standard classifier. Ignored when resuming a checkpoint.
   */
  init?: string;
  /** With an adversary: validation images attacked each epoch for the robust accuracy that picks the saved epoch (default 1000). */
  robustValCount?: number;
  /**
   * PatchCleanser-style mask augmentation: each training image gets 0, 1 or 2 (equally likely) masks of
   * the mask set for a patch side drawn from these sizes (pixels zeroed), so that the classifier keeps its
   * label under the double masking it is certified with.
   */
  maskAug?: number[];
  /**
   * Purification-aware training: in every batch the first round(fraction * batchSize) images are replaced by
   * their purified versions (fresh purification draws every epoch). The epoch is then chosen by the mean of
   * the clean validation accuracy and the validation accuracy after each of the purifier's `validate` settings.
   */
  purifyAug?: BatchPurifier;
  /** With purifyAug: validation images purified per setting for the score that picks the saved epoch (default 1000). */
  purifiedValCount?: number;
  /**
   * Consistency regularization (Jeong & Shin 2020) on top of Gaussian-noise training (needs noiseSigma): each
   * image gets `draws` noise draws; the loss adds lambda * mean KL(p_bar || p_i) + eta * H(p_bar), p_bar the
   * mean softmax over the draws. The epoch is then chosen by the smoothed classifier's validation ACR.
   */
  consistency?: ConsistencyOptions;
  /** Validation images (each with 100 noise draws) for the ACR a noise-trained run logs every epoch (default 500). */
  acrValCount?: number;
  /** Training images batch norm is recalibrated on after each epoch (default 4096). */
  bnCalibrationCount?: number;
  /** Storage of the saved weights (default float16); uint8 for secondary models under the size budget. */
  weightsDtype?: WeightsDtype;
  log?: (line: string) => void;
}

/**
 * The best validation score of the run: robust accuracy under the training attack for adversarial runs,
 * the mean of clean and purified accuracies for purification-aware runs, else clean accuracy.
 */
export type TrainClassifierResult = {
  valAcc: number;
  selectedBy: 'clean' | 'robust' | 'clean+purified' | 'acr';
};

export interface ConsistencyOptions {
  /** weight of the KL term (Jeong & Shin's MNIST recipe: 5) */
  lambda: number;
  /** weight of the entropy term (default 0.5) */
  eta?: number;
  /** noise draws per image (default 2) */
  draws?: number;
}

/** Purifies training batches (purification-aware training). Its data fields (t*, steps, weights hash, ...) are recorded in the saved weights' meta. */
export interface BatchPurifier {
  /** share of each batch that is purified, in (0, 1] */
  fraction: number;
  /**
   * x [B,H,W,C] in [0,1] -> purified batch (the caller disposes it); `u` in [0,1) picks the setting (e.g. t*)
   * for this batch, `seed` its noise; both come from the trainer's own stream, so a resumed run repeats them.
   */
  purify(x: Tensor4D, seed: number, u: number): Tensor4D;
  /** The settings validation accuracy is measured after, by name (e.g. 't*=450'), x -> purified x with a fixed seed. */
  validate: Record<string, (x: Tensor4D) => Tensor4D>;
  /**
   * Denoised smoothing (`--purify-sigma`): the classifier serves denoise(x + N(0, sigma^2)); the epoch is then kept by
   * that smoothed classifier's validation ACR and batch norm is recalibrated on denoised training images.
   */
  smoothing?: { sigma: number; denoise: (xNoisy: Tensor4D) => Tensor4D };
  [setting: string]: unknown;
}

export interface AdversaryContext {
  epoch: number;
  noiseSeed: number;
  draws: number;
  noiseSigma?: number;
}

/** Makes a training batch adversarial. Its data fields (eps, steps, ...) are recorded in the saved weights' meta. */
export interface BatchAdversary {
  /**
   * x [B,H,W,C] in [0,1], labels y [B] -> perturbed batch (the caller disposes it); `model` is the network
   * being trained; `seed`: this batch's random draws (from the trainer's per-epoch stream, so a resumed run repeats them);
   * `ctx`: the epoch (0-based) and, for an attack on the smoothed classifier, the seed of the Gaussian noise the trainer
   * adds next to the `draws` tiled copies of the returned batch, randomNormal([draws * B, H, W, C], 0, noiseSigma, seed).
   */
  perturb(x: Tensor4D, y: Tensor1D, model: tf.Sequential, seed: number, ctx?: AdversaryContext): Tensor4D;
  /**
   * SmoothAdv (Salman et al. 2019): the attack is on the smoothed classifier over this many noise draws per image, and
   * the network is then trained on every draw (noise training; needs noiseSigma); the epoch is kept by validation ACR.
   */
  noiseDraws?: number;
  /**
   * Epochs over which the attack's strength ramps up (epoch e, 0-based, trains at (e + 1) / warmupEpochs of it):
   * an epoch before the last of them trained against a weaker attack than asked for and is not kept, whatever its
   * validation score (the smoothed proxy cannot see the larger radii a stronger attack buys), unless the run ends
   * within the warm-up.
   */
  warmupEpochs?: number;
  /**
   * The same attack against an inference-mode classifier (logits function), for robust validation accuracy;
   * without it adversarial training picks its epoch by clean validation accuracy.
   */
  attack?(f: (x: Tensor4D) => tf.Tensor2D, x: Tensor4D, y: Tensor1D, seed: number): Tensor4D;
  [setting: string]: unknown;
}

export function accuracy(predict: (x: Tensor4D) => tf.Tensor2D, ds: Dataset, batchSize = 250): number {
  let correct = 0;
  for (let s = 0; s < ds.count; s += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, ds.count - s) }, (_, i) => s + i);
    correct += tf.tidy(() => {
      const { x, y } = batch(ds, idx);
      return predict(x).argMax(-1).equal(y).sum().dataSync()[0];
    });
  }
  return correct / ds.count;
}

/**
 * Set every batch-norm layer's moving mean/variance to the exact population statistics of `n`
 * un-augmented training images, layer by layer in inference mode (BN recalibration). This makes
 * inference match what the network was trained on, independent of the moving averages' lag.
 * `prep` transforms each batch first, as the inputs the classifier is meant for look: a Gaussian-noise
 * classifier (randomized smoothing) is calibrated on noisy images, not clean ones (clean statistics cost
 * a sigma-0.25 classifier ~10 points under noise).
 */
export function recalibrateBatchNorm(model: tf.Sequential, ds: Dataset, n = 4096, batchSize = 256, prep?: (x: Tensor4D, batchIndex: number) => Tensor4D): void {
  const layers = model.layers;
  const count = Math.min(n, ds.count);
  for (let k = 0; k < layers.length; k++) {
    const bn = layers[k];
    if (bn.getClassName() !== 'BatchNormalization') continue;
    let sum: tf.Tensor | undefined;
    let sumSq: tf.Tensor | undefined;
    let m = 0;
    for (let s = 0; s < count; s += batchSize) {
      const idx = Array.from({ length: Math.min(batchSize, count - s) }, (_, i) => s + i);
      const [a, b] = tf.tidy(() => {
        const { x, y } = batch(ds, idx);
        y.dispose();
        let h: tf.Tensor = prep ? prep(x as Tensor4D, s / batchSize) : x;
        for (let j = 0; j < k; j++) h = layers[j].apply(h, { training: false }) as tf.Tensor;
        return [h.sum([0, 1, 2]), h.square().sum([0, 1, 2])];
      });
      m += idx.length;
      const [s0, q0] = [sum, sumSq];
      sum = s0 ? tf.tidy(() => s0.add(a)) : a.clone();
      sumSq = q0 ? tf.tidy(() => q0.add(b)) : b.clone();
      tf.dispose([a, b, ...(s0 ? [s0] : []), ...(q0 ? [q0] : [])]);
    }
    const [h, w] = ((layers[k].input as tf.SymbolicTensor).shape.slice(1, 3) as number[]);
    const total = m * h * w;
    tf.tidy(() => {
      const mean = sum!.div(total);
      const variance = sumSq!.div(total).sub(mean.square()).relu();
      const byName = (suffix: string) => bn.weights.find((w) => w.originalName.endsWith(suffix))!;
      byName('moving_mean').write(mean);
      byName('moving_variance').write(variance);
    });
    tf.dispose([sum!, sumSq!]);
  }
}

/** Accuracy on the first `count` images of `ds` after the adversary's attack on the inference-mode classifier. */
export function robustAccuracy(clf: CnnClassifier, adversary: BatchAdversary, ds: Dataset, count: number, seed: number, batchSize = 125): number {
  const n = Math.min(count, ds.count);
  let correct = 0;
  for (let s = 0; s < n; s += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, n - s) }, (_, i) => s + i);
    const { x, y } = batch(ds, idx);
    const xa = adversary.attack!((v) => clf.predict(v), x as Tensor4D, y as Tensor1D, seed * 7_777 + s);
    correct += tf.tidy(() => clf.predict(xa).argMax(-1).equal(y).sum().dataSync()[0]);
    tf.dispose([x, y, xa]);
  }
  return correct / n;
}

export async function trainClassifier(o: TrainClassifierOptions): Promise<TrainClassifierResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const train = loadDataset(o.dataset, 'train');
  const val = loadDataset(o.dataset, 'val');
  const meta: ClassifierMeta = {
    kind: 'cnn-classifier', dataset: o.dataset, classNames: train.classNames, inputShape: train.shape,
    widths: o.widths ?? [32, 64, 256],
  };
  const model = buildCnn(meta.inputShape, meta.classNames.length, meta.widths, o.seed);
  const clf = new CnnClassifier(model, meta, 'training');
  const opt = tf.train.adam(o.lr);
  let epoch = 0;
  let step = 0;
  let best = -1;
  let resumeAt = 0; // steps of the current epoch already done (a mid-epoch checkpoint)
  const every = o.checkpointEverySteps ?? 100;
  if (!checkpointExists(o.checkpoint) && o.init) {
    const { meta: initMeta, tensors } = loadWeights<ClassifierMeta>(o.init);
    try {
      if (initMeta.kind !== 'cnn-classifier' || initMeta.dataset !== o.dataset || String(initMeta.widths) !== String(meta.widths)) {
        throw new Error(`--init ${o.init}: a ${initMeta.dataset} classifier of widths ${initMeta.widths} cannot start a ${o.dataset} run of widths ${meta.widths}`);
      }
      assignWeights(model, tensors);
    } finally {
      tf.dispose(Object.values(tensors));
    }
    log(`initialised from ${o.init}`);
  }
  if (checkpointExists(o.checkpoint)) {
    const ck = await loadCheckpoint(o.checkpoint, opt);
    assignWeights(model, ck.model);
    tf.dispose(Object.values(ck.model));
    epoch = ck.state.epoch;
    step = ck.state.step;
    best = (ck.state.bestVal as number) ?? -1;
    resumeAt = (ck.state.stepInEpoch as number | undefined) ?? 0;
    step -= resumeAt; // the replayed steps below count themselves again
    log(`resumed ${o.checkpoint} at epoch ${epoch + 1}${resumeAt ? `, step ${resumeAt} of it` : ''} (best val ${best})`);
  }
  const size = imageSize(train);
  const mirror = mirrorKeepsClass(o.dataset);
  const [h, w, c] = train.shape;
  const stepsPerEpoch = Math.min(Math.floor(train.count / o.batchSize), o.stepsPerEpoch ?? Infinity);
  const totalSteps = stepsPerEpoch * o.epochs;
  const vars = model.trainableWeights.map((v) => v.read() as tf.Variable);
  const dropouts = model.layers.filter((l) => l.getClassName() === 'Dropout') as unknown as { seed?: number }[];
  // consistency regularization over noise draws: of the classifier on x + noise (noiseSigma), or of the classifier behind
  // denoised smoothing (purifyAug.smoothing), whose draws are separate one-shot denoisings of separate noisy copies
  const smoothAug = o.purifyAug?.smoothing ? o.purifyAug : undefined;
  if (o.consistency && !o.noiseSigma && !smoothAug) throw new RangeError('consistency regularization needs Gaussian-noise training (noiseSigma) or denoised smoothing (purifyAug with smoothing)');
  if (o.consistency && smoothAug && smoothAug.fraction !== 1) throw new RangeError(`consistency over denoised draws needs every row denoised (purify fraction 1), got ${smoothAug.fraction}`);
  const advDraws = o.adversary?.noiseDraws;
  if (advDraws !== undefined) {
    if (!o.noiseSigma) throw new RangeError('an attack on the smoothed classifier (SmoothAdv) needs Gaussian-noise training (noiseSigma)');
    if (!(Number.isInteger(advDraws) && advDraws >= 1)) throw new RangeError(`SmoothAdv needs an integer number of noise draws >= 1, got ${advDraws}`);
    if (o.consistency && (o.consistency.draws ?? 2) !== advDraws) throw new RangeError(`SmoothAdv's ${advDraws} noise draws and consistency's ${o.consistency.draws ?? 2} must be the same draws`);
    if (o.adversary?.attack) throw new RangeError('a SmoothAdv adversary is validated by the smoothed classifier\'s ACR, not a robust accuracy: drop its attack()');
  }
  const draws = o.consistency ? (o.consistency.draws ?? 2) : (advDraws ?? 1);
  const byAcr = Boolean(o.consistency || smoothAug || advDraws); // the epoch kept by the smoothed classifier's validation ACR
  if (o.consistency && !(Number.isInteger(draws) && draws >= 2)) throw new RangeError(`consistency needs an integer number of noise draws >= 2, got ${draws}`);
  const maskSets = o.maskAug?.length ? o.maskAug.map((p) => maskSet(h, w, { patch: p })) : undefined;
  for (; epoch < o.epochs; epoch++) {
    const rng = mulberry32(o.seed * 1000 + epoch);
    const maskRng = mulberry32(o.seed * 1000 + epoch + 0x6d61736b); // its own stream: plain training's draws are unchanged
    const purifyRng = mulberry32(o.seed * 1000 + epoch + 0x70757269); // likewise
    const order = permutation(train.count, o.seed * 7919 + epoch);
    const bar = new Progress(stepsPerEpoch, `classifier epoch ${epoch + 1}/${o.epochs}`);
    const xb = new Float32Array(o.batchSize * size);
    const yb = new Int32Array(o.batchSize);
    let lossAvg = NaN; // exponential moving average of the training loss (sampled every 5 steps)
    for (let s = 0; s < stepsPerEpoch; s++, step++) {
      for (let i = 0; i < o.batchSize; i++) {
        const j = order[s * o.batchSize + i];
        augmentInto(xb.subarray(i * size, (i + 1) * size), train.images.subarray(j * size, (j + 1) * size), h, w, c, rng, 2, mirror);
        if (maskSets) applyRandomMasks(xb.subarray(i * size, (i + 1) * size), h, w, c, maskSets, maskRng);
        yb[i] = train.labels[j];
      }
      const noiseSeed = Math.floor(rng() * 2 ** 31);
      const advSeed = o.adversary ? Math.floor(rng() * 2 ** 31) : 0; // (plain training's stream is unchanged)
      const purifySeed = o.purifyAug ? Math.floor(purifyRng() * 2 ** 31) : 0;
      const purifyU = o.purifyAug ? purifyRng() : 0;
      if (s < resumeAt) continue; // replay of a resumed epoch: same batches and random draws, no training
      (opt as unknown as { learningRate: number }).learningRate = o.lr * 0.5 * (1 + Math.cos((Math.PI * step) / totalSteps));
      // dropout masks from (seed, step), not Math.random: a run, resumed or not, is reproducible
      for (const d of dropouts) d.seed = (o.seed * 1_000_003 + step) >>> 0;
      const adv = o.adversary && tf.tidy(() => o.adversary!.perturb(tf.tensor4d(xb, [o.batchSize, h, w, c]), tf.tensor1d(yb, 'int32'), model, advSeed,
        { epoch, noiseSeed, draws, noiseSigma: o.noiseSigma }));
      // (denoised draws: the batch is tiled before the noise and the denoiser, so each copy has its own noise)
      const tileFirst = draws > 1 && smoothAug !== undefined;
      const src = tileFirst ? tf.tidy(() => tf.tile(adv ?? tf.tensor4d(xb, [o.batchSize, h, w, c]), [draws, 1, 1, 1]) as Tensor4D) : undefined;
      const purified = o.purifyAug && purifyBatch(o.purifyAug, src ?? adv ?? xb, [(tileFirst ? draws : 1) * o.batchSize, h, w, c], purifySeed, purifyU);
      src?.dispose();
      const loss = opt.minimize(() => tf.tidy(() => {
        let x = purified ?? adv ?? tf.tensor4d(xb, [o.batchSize, h, w, c]);
        if (draws > 1 && !tileFirst) x = tf.tile(x, [draws, 1, 1, 1]); // the draws as consecutive blocks of the batch
        if (o.noiseSigma) x = x.add(tf.randomNormal(x.shape, 0, o.noiseSigma, 'float32', noiseSeed));
        const logits = model.apply(x, { training: true }) as tf.Tensor2D;
        const labels = tf.tensor1d(yb, 'int32');
        if (o.consistency) return consistencyLoss(logits, labels, draws, o.consistency.lambda, o.consistency.eta ?? 0.5);
        const y = draws > 1 ? tf.tile(labels, [draws]) : labels; // (SmoothAdv: cross-entropy over every noisy copy)
        return tf.losses.softmaxCrossEntropy(tf.oneHot(y, meta.classNames.length), logits) as tf.Scalar;
      }), true, vars);
      adv?.dispose();
      purified?.dispose();
      if (loss) {
        if (s % 5 === 0) {
          const l = loss.dataSync()[0];
          lossAvg = Number.isNaN(lossAvg) ? l : 0.8 * lossAvg + 0.2 * l;
        }
        loss.dispose();
      }
      bar.update(s + 1, `loss ${fmtLoss(lossAvg, 3)}`);
      await yieldToEventLoop(); // a long run stays responsive (signals, progress, test runners' RPC)
      if (every > 0 && (s + 1) % every === 0 && s + 1 < stepsPerEpoch) {
        // mid-epoch checkpoint (adversarial epochs take hours): resume replays this epoch's stream to here
        await saveCheckpoint(o.checkpoint, namedWeights(model), opt, { epoch, step: step + 1, stepInEpoch: s + 1, seed: o.seed, bestVal: best });
      }
    }
    resumeAt = 0;
    bar.done();
    const aug = o.purifyAug;
    const smoothing = aug?.smoothing;
    recalibrateBatchNorm(model, train, o.bnCalibrationCount ?? 4096, 256, aug && smoothing ? (x, i) => aug.purify(x, 0x6e6f6973 + i, 0) : noisePrep(o.noiseSigma));
    await yieldToEventLoop(); // (between the validation passes too: each can take minutes)
    const valAcc = accuracy(noisyPredictor(clf, o.noiseSigma), val);
    await yieldToEventLoop();
    // adversarial training keeps the epoch of best robust validation accuracy (robust overfitting: Rice et al. 2020)
    const robustVal = o.adversary?.attack ? robustAccuracy(clf, o.adversary, val, o.robustValCount ?? 1000, o.seed) : undefined;
    await yieldToEventLoop();
    const purifiedVal = o.purifyAug ? purifiedAccuracies(clf, o.purifyAug, val, o.purifiedValCount ?? 1000) : undefined;
    await yieldToEventLoop();
    const purifiedMean = purifiedVal && Object.values(purifiedVal).reduce((p, q) => p + q, 0) / Object.keys(purifiedVal).length;
    const acrCount = Math.min(o.acrValCount ?? 500, val.count);
    const denoised = smoothing && { predict: (x: Tensor4D) => tf.tidy(() => clf.predict(smoothing.denoise(x))) };
    const acr = acrCount > 0 && (denoised ? await smoothedValidation(denoised, val, smoothing.sigma, acrCount) : o.noiseSigma ? await smoothedValidation(clf, val, o.noiseSigma, acrCount) : undefined);
    // smoothed classifiers (consistency training, dds fine-tuning) are kept by their validation ACR
    const score = robustVal ?? (byAcr && acr ? acr.acr : purifiedMean !== undefined ? (valAcc + purifiedMean) / 2 : valAcc);
    log(`epoch ${epoch + 1}: loss ${lossAvg.toFixed(4)} val acc ${(100 * valAcc).toFixed(2)}%${o.noiseSigma ? ` (under noise sigma ${o.noiseSigma})` : ''}` +
      (acr ? `, smoothed: ACR ${acr.acr.toFixed(3)}, certified ${(100 * acr.certified).toFixed(1)}% (${acrCount} images, ${SMOOTH_VAL_DRAWS} draws, alpha ${SMOOTH_VAL_ALPHA})` : '') +
      (robustVal !== undefined ? `, robust val acc ${(100 * robustVal).toFixed(2)}% (training attack, ${Math.min(o.robustValCount ?? 1000, val.count)} images)` : '') +
      (purifiedVal ? `, after purification ${Object.entries(purifiedVal).map(([k, v]) => `${k} ${(100 * v).toFixed(2)}%`).join(', ')} (${Math.min(o.purifiedValCount ?? 1000, val.count)} images)` : ''));
    const warming = epoch + 1 < Math.min(o.adversary?.warmupEpochs ?? 1, o.epochs);
    if (warming) log(`  (attack warm-up epoch ${epoch + 1} of ${o.adversary?.warmupEpochs}: not kept)`);
    if (!warming && score > best) {
      best = score;
      saveClassifier(o.out, clf, {
        valAcc, ...(robustVal !== undefined ? { robustValAcc: robustVal } : {}), ...(acr ? { smoothedVal: { ...acr, images: acrCount, draws: SMOOTH_VAL_DRAWS, alpha: SMOOTH_VAL_ALPHA } } : {}), ...(purifiedVal ? { purifiedValAcc: purifiedVal } : {}),
        epoch: epoch + 1, trainedWith: { ...o, log: undefined, purifyAug: o.purifyAug && settingsOf(o.purifyAug) },
      }, o.weightsDtype);
      log(`  saved ${o.out} (best val so far)`);
    }
    await saveCheckpoint(o.checkpoint, namedWeights(model), opt, { epoch: epoch + 1, step, seed: o.seed, bestVal: best });
  }
  clf.dispose(); // the model and its folded inference form
  opt.dispose();
  return { valAcc: best, selectedBy: o.adversary?.attack ? 'robust' : byAcr ? 'acr' : o.purifyAug ? 'clean+purified' : 'clean' };
}

/**
 * Jeong & Shin's consistency loss. `logits` [draws*B, K] holds `draws` noisy copies of a batch as consecutive
 * blocks, `labels` [B]: mean cross-entropy over all copies + lambda * mean_i KL(p_bar || p_i) + eta * H(p_bar),
 * with p_bar the mean of the copies' softmax (computed in log space, so no log of an underflowed zero).
 */
export function consistencyLoss(logits: tf.Tensor2D, labels: Tensor1D, draws: number, lambda: number, eta: number): tf.Scalar {
  return tf.tidy(() => {
    const [n, k] = logits.shape;
    const b = n / draws;
    if (!Number.isInteger(b) || labels.shape[0] !== b) throw new RangeError(`consistencyLoss: ${n} logits rows are not ${draws} copies of ${labels.shape[0]} labels`);
    const ce = tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tile(labels, [draws]), k), logits);
    const logp = tf.logSoftmax(logits).reshape([draws, b, k]);
    const logPbar = tf.logSumExp(logp, 0).sub(Math.log(draws)); // [B, K]
    const pbar = tf.exp(logPbar);
    const kl = pbar.mul(logPbar.sub(logp)).sum(-1).mean(); // over draws and images
    const entropy = pbar.mul(logPbar).sum(-1).neg().mean();
    return ce.add(kl.mul(lambda)).add(entropy.mul(eta)) as tf.Scalar;
  });
}

const SMOOTH_VAL_DRAWS = 100;
const SMOOTH_VAL_ALPHA = 0.01;

/**
 * The smoothed classifier on validation images, as a certification run would see it but cheaper: per image,
 * 100 noise draws; certified when the label wins with a one-sided Clopper-Pearson lower bound pA > 1/2 at
 * alpha 0.01, radius sigma * PhiInverse(pA) (up to 1.70 sigma at this n). Returns the average certified radius
 * (ACR, 0 for images not certified with their label) and the share certified. Fixed noise seeds: epochs are
 * compared on the same draws.
 */
export async function smoothedValidation(clf: Pick<CnnClassifier, 'predict'>, ds: Dataset, sigma: number, count: number, imagesPerBatch = 20): Promise<{ acr: number; certified: number }> {
  const n = Math.min(count, ds.count);
  let radii = 0;
  let certified = 0;
  for (let s = 0; s < n; s += imagesPerBatch) {
    await yieldToEventLoop(); // minutes of synchronous forwards through a denoiser otherwise
    const idx = Array.from({ length: Math.min(imagesPerBatch, n - s) }, (_, i) => s + i);
    const hits = tf.tidy(() => {
      const { x, y } = batch(ds, idx);
      const xs = tf.tile(x, [SMOOTH_VAL_DRAWS, 1, 1, 1]);
      const pred = clf.predict(xs.add(tf.randomNormal(xs.shape, 0, sigma, 'float32', 0x61637200 + s)) as Tensor4D).argMax(-1);
      return pred.equal(tf.tile(y, [SMOOTH_VAL_DRAWS])).reshape([SMOOTH_VAL_DRAWS, idx.length]).cast('int32').sum(0).dataSync();
    });
    for (const k of hits) {
      const r = smoothedRadius(k, sigma);
      if (r !== undefined) {
        certified++;
        radii += r;
      }
    }
  }
  return { acr: radii / n, certified: certified / n };
}

/** The validation proxy's radius for an image whose label won `k` of the 100 draws (undefined: not certified). */
export function smoothedRadius(k: number, sigma: number): number | undefined {
  const pA = k === 0 ? 0 : betaQuantile(SMOOTH_VAL_ALPHA, k, SMOOTH_VAL_DRAWS - k + 1);
  return pA > 0.5 ? sigma * normalQuantile(pA, 0, 1) : undefined;
}

/** The input transform a Gaussian-noise classifier is calibrated with (fixed seeds per batch); undefined without noise. */
export function noisePrep(sigma: number | undefined): ((x: Tensor4D, batchIndex: number) => Tensor4D) | undefined {
  if (!sigma) return undefined;
  return (x, i) => tf.tidy(() => x.add(tf.randomNormal(x.shape, 0, sigma, 'float32', 0x6e6f6973 + i)) as Tensor4D);
}

/** A batch whose first round(fraction * B) images are purified (from a Float32Array batch or an adversarial tensor). */
function purifyBatch(p: BatchPurifier, x: Float32Array | Tensor4D, shape: [number, number, number, number], seed: number, u: number): Tensor4D {
  return tf.tidy(() => {
    const full = x instanceof Float32Array ? tf.tensor4d(x, shape) : x;
    const k = Math.min(shape[0], Math.max(1, Math.round(p.fraction * shape[0])));
    const head = tf.slice(full, [0, 0, 0, 0], [k, shape[1], shape[2], shape[3]]) as Tensor4D;
    const cleaned = p.purify(head, seed, u);
    if (k === shape[0]) return cleaned;
    return tf.concat([cleaned, tf.slice(full, [k, 0, 0, 0], [shape[0] - k, shape[1], shape[2], shape[3]])], 0) as Tensor4D;
  });
}

/** Validation accuracy after each of the purifier's validation settings, on the first `count` images. */
export function purifiedAccuracies(clf: CnnClassifier, p: BatchPurifier, ds: Dataset, count: number, batchSize = 100): Record<string, number> {
  const head = take(ds, Math.min(count, ds.count));
  return Object.fromEntries(Object.entries(p.validate).map(([name, f]) => [name, accuracy((x) => clf.predict(f(x)), head, batchSize)]));
}

/** The classifier on x + N(0, sigma^2) with one fixed noise draw (seed 1) per batch, as validation measures it; plain without sigma. */
export function noisyPredictor(clf: CnnClassifier, sigma: number | undefined): (x: Tensor4D) => tf.Tensor2D {
  return (x) => tf.tidy(() => clf.predict(sigma ? (x.add(tf.randomNormal(x.shape, 0, sigma, 'float32', 1)) as Tensor4D) : x));
}

/** The purifier's data fields (functions dropped), for the saved weights' meta. */
function settingsOf(p: BatchPurifier): Record<string, unknown> {
  return Object.fromEntries(Object.entries(p).filter(([, v]) => typeof v !== 'function' && !(v && typeof v === 'object' && Object.values(v).some((q) => typeof q === 'function'))));
}

/** Zero 0, 1 or 2 (equally likely) masks of one randomly chosen mask set in one image [h*w*c] (in place). */
export function applyRandomMasks(img: Float32Array, h: number, w: number, c: number, sets: Rect[][], rng: () => number): void {
  const set = sets[Math.floor(rng() * sets.length)];
  const k = Math.floor(rng() * 3);
  for (let m = 0; m < k; m++) {
    const r = set[Math.floor(rng() * set.length)];
    for (let y = r.top; y < Math.min(h, r.top + r.height); y++) img.fill(0, (y * w + r.left) * c, (y * w + Math.min(w, r.left + r.width)) * c);
  }
}
