/**
 * The purifier behind purification-aware classifier training (`advpurify train classifier --purify-aug`):
 * DiffPure with the shipped diffusion model at a t* drawn per batch from a list, so that the classifier
 * `purify()` feeds learns the purifier's output distribution (smoothed textures, occasionally a changed
 * detail) instead of meeting it only at test time.
 */
import type { Tensor4D } from '../backend/index.js';
import { weightsFingerprint } from '../models/weights.js';
import { createPurifier, modelPath } from '../purify/index.js';
import type { BatchPurifier } from './classifier.js';

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
  const fraction = o.fraction ?? 0.5;
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`purify-fraction must be in (0, 1], got ${fraction}`);
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
