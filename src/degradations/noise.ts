/**
 * Additive noise: Gaussian, uniform, Gaussian restricted to random blobs ("inconsistent"), and
 * Perlin gradient noise. Pixel noise is independent per pixel and channel; Perlin noise is one
 * smooth map per image, shared by its channels (an illumination-like texture).
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { mulberry32, type Rng } from '../util/rng.js';
import { at, defineSync, nextSeed } from './common.js';

/** Standard deviation in [0,1] pixel units; ImageNet-C's gaussian_noise values. */
const GAUSSIAN_SIGMA = [0.08, 0.12, 0.18, 0.26, 0.38] as const;

export const gaussianNoise = defineSync(
  {
    name: 'gaussian-noise',
    description: 'x + N(0, sigma^2), per pixel and channel',
    table: { sigma: GAUSSIAN_SIGMA },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const sigma = at(GAUSSIAN_SIGMA, severity);
    return { y: x.add(tf.randomNormal(x.shape, 0, sigma, 'float32', seed)), params: { sigma } };
  },
);

/** Half-width a of U(-a, a): sqrt(3) * GAUSSIAN_SIGMA, so the noise has the same standard deviation. */
const UNIFORM_HALF_WIDTH = [0.14, 0.21, 0.31, 0.45, 0.66] as const;

export const uniformNoise = defineSync(
  {
    name: 'uniform-noise',
    description: 'x + U(-a, a), per pixel and channel',
    table: { halfWidth: UNIFORM_HALF_WIDTH },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const halfWidth = at(UNIFORM_HALF_WIDTH, severity);
    return { y: x.add(tf.randomUniform(x.shape, -halfWidth, halfWidth, 'float32', seed)), params: { halfWidth } };
  },
);

/** The mask keeps pixels where a smooth U(0,1) field (4x4 cells, bilinear) is below `threshold`. */
const MASK_GRID = 4;
const MASK_THRESHOLD = [0.3, 0.4, 0.5, 0.6, 0.7] as const;
const MASK_SIGMA = [0.12, 0.18, 0.26, 0.32, 0.38] as const;

export const inconsistentNoise = defineSync(
  {
    name: 'inconsistent-noise',
    description: `Gaussian noise inside random blobs: a ${MASK_GRID}x${MASK_GRID} U(0,1) field, upsampled bilinearly, below threshold`,
    table: { threshold: MASK_THRESHOLD, sigma: MASK_SIGMA },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const [n, h, w] = x.shape;
    const rng = mulberry32(seed);
    const threshold = at(MASK_THRESHOLD, severity);
    const sigma = at(MASK_SIGMA, severity);
    const field = tf.randomUniform([n, MASK_GRID, MASK_GRID, 1], 0, 1, 'float32', nextSeed(rng));
    const mask = tf.image.resizeBilinear(field as Tensor4D, [h, w], true).less(threshold).toFloat();
    const noise = tf.randomNormal(x.shape, 0, sigma, 'float32', nextSeed(rng));
    return { y: x.add(noise.mul(mask)), params: { threshold, sigma, grid: MASK_GRID } };
  },
);

/** Amplitude of the fractal Perlin map (values in about [-1, 1]) added to the image. */
const PERLIN_AMPLITUDE = [0.15, 0.25, 0.35, 0.45, 0.6] as const;
/** Lattice cell of the first octave as a fraction of the image side; later octaves halve it. */
const PERLIN_CELL = 0.5;
const PERLIN_OCTAVES = 3;

const fade = (t: number) => t * t * t * (t * (t * 6 - 15) + 10);

/** One octave of 2-D Perlin noise, in about [-1, 1], with a random gradient per lattice point. */
function perlinOctave(h: number, w: number, cell: number, rng: Rng, out: Float32Array, weight: number): void {
  const gh = Math.ceil(h / cell) + 1;
  const gw = Math.ceil(w / cell) + 1;
  const gx = new Float32Array(gh * gw);
  const gy = new Float32Array(gh * gw);
  for (let k = 0; k < gx.length; k++) {
    const a = rng() * 2 * Math.PI;
    gx[k] = Math.cos(a);
    gy[k] = Math.sin(a);
  }
  const dot = (i: number, j: number, dy: number, dx: number) => gy[i * gw + j] * dy + gx[i * gw + j] * dx;
  for (let r = 0; r < h; r++) {
    const v = (r + 0.5) / cell;
    const i = Math.floor(v);
    const fv = v - i;
    for (let c = 0; c < w; c++) {
      const u = (c + 0.5) / cell;
      const j = Math.floor(u);
      const fu = u - j;
      const top = dot(i, j, fv, fu) + fade(fu) * (dot(i, j + 1, fv, fu - 1) - dot(i, j, fv, fu));
      const bottom = dot(i + 1, j, fv - 1, fu) + fade(fu) * (dot(i + 1, j + 1, fv - 1, fu - 1) - dot(i + 1, j, fv - 1, fu));
      // 2-D Perlin noise lies in [-sqrt(1/2), sqrt(1/2)]: scale to [-1, 1]
      out[r * w + c] += weight * Math.SQRT2 * (top + fade(fv) * (bottom - top));
    }
  }
}

/** Fractal Perlin maps [N, H, W, 1], one per image, in about [-1, 1]. */
export function perlinMaps(n: number, h: number, w: number, seed: number): Float32Array {
  const rng = mulberry32(seed);
  const out = new Float32Array(n * h * w);
  const norm = 2 - 2 ** (1 - PERLIN_OCTAVES); // sum of octave weights 1, 1/2, 1/4, ...
  for (let k = 0; k < n; k++) {
    const map = out.subarray(k * h * w, (k + 1) * h * w);
    for (let o = 0; o < PERLIN_OCTAVES; o++) {
      perlinOctave(h, w, Math.max(1, (PERLIN_CELL * Math.min(h, w)) / 2 ** o), rng, map, 2 ** -o / norm);
    }
  }
  return out;
}

export const perlinNoise = defineSync(
  {
    name: 'perlin-noise',
    description: `x + amplitude * fractal Perlin noise (${PERLIN_OCTAVES} octaves, first cell ${PERLIN_CELL} of the side), shared by channels`,
    table: { amplitude: PERLIN_AMPLITUDE },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const [n, h, w] = x.shape;
    const amplitude = at(PERLIN_AMPLITUDE, severity);
    const maps = tf.tensor4d(perlinMaps(n, h, w, seed), [n, h, w, 1]);
    return { y: x.add(maps.mul(amplitude)), params: { amplitude, octaves: PERLIN_OCTAVES, cell: PERLIN_CELL } };
  },
);
