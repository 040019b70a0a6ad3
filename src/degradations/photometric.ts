/**
 * Tone changes: exposure (gain of +-stops), contrast reduction towards the image mean, and gamma
 * (x^gamma with gamma = 2^(+-g)). Exposure and gamma pick the direction (darker or brighter) per
 * image from the seed.
 */
import { tf } from '../backend/index.js';
import { mulberry32 } from '../util/rng.js';
import { at, defineSync } from './common.js';

/** Per-image signs +1 / -1 drawn from the seed. */
function signs(n: number, seed: number): number[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, () => (rng() < 0.5 ? -1 : 1));
}

/** Exposure change in stops (a factor 2^stops); the sign is random per image. */
const EXPOSURE_STOPS = [0.5, 0.75, 1.0, 1.5, 2.0] as const;

export const exposure = defineSync(
  {
    name: 'exposure',
    description: 'x * 2^(+-stops), direction random per image, clipped (over-exposure saturates)',
    table: { stops: EXPOSURE_STOPS },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const stops = at(EXPOSURE_STOPS, severity);
    const directions = signs(x.shape[0], seed);
    const gains = tf.tensor4d(directions.map((s) => 2 ** (s * stops)), [x.shape[0], 1, 1, 1]);
    return { y: x.mul(gains), params: { stops, directions } };
  },
);

/** Contrast factor c: (x - mean) * c + mean, per image (CIFAR-10-C's contrast values). */
const CONTRAST_FACTOR = [0.75, 0.5, 0.4, 0.3, 0.15] as const;

export const contrast = defineSync(
  {
    name: 'contrast',
    description: '(x - mean) * c + mean with the mean over each image',
    table: { factor: CONTRAST_FACTOR },
    random: false,
    differentiable: true,
  },
  (x, severity) => {
    const factor = at(CONTRAST_FACTOR, severity);
    const mean = x.mean([1, 2, 3], true);
    return { y: x.sub(mean).mul(factor).add(mean), params: { factor } };
  },
);

/** |log2 gamma|: gamma = 2^(+-g), direction random per image. */
const GAMMA_LOG2 = [0.25, 0.5, 0.75, 1.0, 1.5] as const;
/** Keeps the gradient of x^gamma finite at 0; rescaled so that 0 -> 0 and 1 -> 1 exactly. */
const GAMMA_EPS = 1e-4;

export const gamma = defineSync(
  {
    name: 'gamma',
    description: 'x^gamma, gamma = 2^(+-g), direction random per image; 0 and 1 are fixed points',
    table: { log2Gamma: GAMMA_LOG2 },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const n = x.shape[0];
    const log2Gamma = at(GAMMA_LOG2, severity);
    const gammas = signs(n, seed).map((s) => 2 ** (s * log2Gamma));
    const g = tf.tensor4d(gammas, [n, 1, 1, 1]);
    const floor = tf.pow(GAMMA_EPS, g);
    const y = tf.pow(x.maximum(GAMMA_EPS), g).sub(floor).div(tf.sub(1, floor));
    return { y, params: { log2Gamma, gammas } };
  },
);
