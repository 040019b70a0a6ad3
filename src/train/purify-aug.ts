/**
 * The purifier behind purification-aware classifier training (`advpurify train classifier --purify-aug`):
 * DiffPure with the shipped diffusion model at a t* drawn per batch from a list, so that the classifier
 * `purify()` feeds learns the purifier's output distribution (smoothed textures, occasionally a changed
 * detail) instead of meeting it only at test time.
 *
 * `ddsAugmenter` (`--purify-sigma S`): the base classifier of denoised smoothing fine-tuned on what it sees
 * there, the diffusion model's one-shot denoising of x + N(0, S^2) (Carlini et al. 2023 fine-tune theirs too).
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { randomSequence } from '../degradations/index.js';
import { mulberry32 } from '../util/rng.js';
import { restoreWeightsPath } from '../models/restore-model.js';
import { oneShotDenoiser } from '../../certify/bases.js';
import { weightsFingerprint } from '../models/weights.js';
import { createPurifier, loadDiffusionModel, modelPath } from '../purify/index.js';
import type { BatchPurifier } from './classifier.js';

/** The share of each batch an augmenter replaces, in (0, 1]. */
function checkedFraction(fraction: number): number {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`purify-fraction must be in (0, 1], got ${fraction}`);
  return fraction;
}

export interface PurifyAugOptions {
  /** shipped model name or directory of the diffusion weights (default: the data set's) */
  model: string;
  /** the t* values a batch draws from (uniformly) */
  tStars: number[];
  /** reverse steps per purification (default: purify()'s default) */
  steps?: number;
  /** share of each batch purified (default 0.5: the other half stays clean) */
  fraction?: number;
  /** seed of the validation purifications (fixed, so epochs are compared on the same draws) */
  validationSeed?: number;
}

export async function purifyAugmenter(o: PurifyAugOptions): Promise<BatchPurifier> {
  const fraction = checkedFraction(o.fraction ?? 0.5);
  if (o.tStars.length === 0) throw new RangeError('purify-aug needs at least one t*');
  const purifiers = await Promise.all(o.tStars.map((tStar) => createPurifier({ model: o.model, mode: 'diffpure', tStar, steps: o.steps, validate: false })));
  const vSeed = o.validationSeed ?? 2027;
  return {
    method: 'diffpure',
    tStars: o.tStars,
    steps: purifiers[0].options.steps,
    sampler: purifiers[0].options.sampler,
    fraction,
    diffusion: weightsFingerprint(modelPath(o.model)),
    purify: (x: Tensor4D, seed: number, u: number) => purifiers[Math.min(purifiers.length - 1, Math.floor(u * purifiers.length))].purify(x, { seed }),
    validate: Object.fromEntries(purifiers.map((p, i) => [`t*=${o.tStars[i]}`, (x: Tensor4D) => p.purify(x, { seed: vSeed })])),
  };
}

export interface DdsAugOptions {
  /** shipped model name or directory of the diffusion weights (default: the data set's) */
  model: string;
  /** pixel-scale noise level of the smoothing the classifier serves */
  sigma: number;
  /** share of each batch denoised (default 1: the classifier serves denoised inputs only) */
  fraction?: number;
}

/**
 * Batches replaced by the one-shot denoising of x + N(0, sigma^2) with the shipped diffusion model, exactly as the
 * dds certification base computes it; its `smoothing` field makes the trainer pick the epoch by the smoothed
 * (denoise-then-classify) classifier's validation ACR.
 */
export async function ddsAugmenter(o: DdsAugOptions): Promise<BatchPurifier> {
  const fraction = checkedFraction(o.fraction ?? 1);
  if (!(o.sigma > 0 && o.sigma <= 2)) throw new RangeError(`purify-sigma must be in (0, 2], got ${o.sigma}`);
  const dm = await loadDiffusionModel(o.model);
  const denoise = oneShotDenoiser(dm.diffusion, dm.eps, { sigma: o.sigma, seed: 1 });
  const noisy = (x: Tensor4D, seed: number) => tf.tidy(() => x.add(tf.randomNormal(x.shape, 0, o.sigma, 'float32', seed)) as Tensor4D);
  return {
    method: 'dds',
    sigma: o.sigma,
    fraction,
    diffusion: weightsFingerprint(modelPath(o.model)),
    purify: (x: Tensor4D, seed: number) => tf.tidy(() => denoise(noisy(x, seed))),
    validate: { [`dds sigma=${o.sigma}`]: (x: Tensor4D) => tf.tidy(() => denoise(noisy(x, 2027))) },
    smoothing: { sigma: o.sigma, denoise },
  };
}

export interface RestoreAugOptions {
  /** shipped model name or directory holding the restoration weights (default: the data set's) */
  model: string;
  /** share of each batch degraded and restored (default 0.5: the other half stays clean, unrestored) */
  fraction?: number;
  /** images per degradation sequence (default 4, as the restoration trainer) */
  group?: number;
  /** sequence lengths 1..maxLength (default 3) */
  maxLength?: number;
  /** share of the groups left undegraded but still restored (default 0.1): restore() also sees clean images */
  cleanFraction?: number;
  /** validation images per setting are degraded with this seed (default 2027) */
  validationSeed?: number;
}

/**
 * Batches whose rows are damaged, group by group, by a random sequence of 1..maxLength synchronous degradations at
 * random severities 1..5 (sequence seeds are multiples of 4 plus 2: even like the restoration trainer's, never the
 * corruption benchmark's odd ones), then restored by `mode: 'restore'` with its defaults. Validation measures the
 * classifier after restoring fixed degraded validation images and after restoring the clean ones.
 */
export async function restoreAugmenter(o: RestoreAugOptions): Promise<BatchPurifier> {
  const fraction = checkedFraction(o.fraction ?? 0.5);
  const group = o.group ?? 4;
  const maxLength = o.maxLength ?? 3;
  const cleanFraction = o.cleanFraction ?? 0.1;
  if (!(Number.isInteger(group) && group >= 1)) throw new RangeError(`group must be a positive integer, got ${group}`);
  if (!(Number.isInteger(maxLength) && maxLength >= 1)) throw new RangeError(`maxLength must be a positive integer, got ${maxLength}`);
  if (!(cleanFraction >= 0 && cleanFraction <= 1)) throw new RangeError(`cleanFraction must be in [0, 1], got ${cleanFraction}`);
  const restorer = await createPurifier({ model: o.model, mode: 'restore', validate: false });
  const degrade = (x: Tensor4D, seed: number, clean: number): Tensor4D =>
    tf.tidy(() => {
      const rng = mulberry32(seed);
      const n = x.shape[0];
      const parts: Tensor4D[] = [];
      for (let g = 0; g < n; g += group) {
        const part = x.slice([g, 0, 0, 0], [Math.min(group, n - g), -1, -1, -1]) as Tensor4D;
        const length = 1 + Math.floor(rng() * maxLength);
        const seqSeed = 4 * Math.floor(rng() * 2 ** 28) + 2;
        if (rng() < clean) parts.push(part);
        else parts.push(randomSequence({ length, seed: seqSeed, channels: x.shape[3] }).applySync(part).y);
      }
      return tf.concat(parts, 0) as Tensor4D;
    });
  const restore = (x: Tensor4D) => restorer.purify(x) as Tensor4D;
  const vSeed = o.validationSeed ?? 2027;
  return {
    method: 'restore',
    restorer: restorer.options.restorer,
    steps: restorer.options.steps,
    fraction,
    group,
    maxLength,
    cleanFraction,
    restoration: weightsFingerprint(restoreWeightsPath(modelPath(o.model))),
    purify: (x: Tensor4D, seed: number) => tf.tidy(() => restore(degrade(x, seed, cleanFraction))),
    validate: {
      'restored corrupted': (x: Tensor4D) => tf.tidy(() => restore(degrade(x, vSeed, 0))),
      'restored clean': (x: Tensor4D) => restore(x),
    },
  };
}
