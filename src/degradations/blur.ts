/**
 * Blur by convolution with reflect-padded borders: a separable Gaussian, and a motion streak
 * (a line of the given length at a random angle, one angle and so one kernel per image).
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { mulberry32 } from '../util/rng.js';
import { at, defineSync } from './common.js';

/**
 * Every channel of every image as its own one-channel image [N*C, H, W, 1], and back. Blurs use a
 * plain single-channel conv2d, whose gradient every backend has (wasm lacks the depthwise one).
 */
const toPlanes = (x: Tensor4D) => x.transpose([0, 3, 1, 2]).reshape([-1, x.shape[1], x.shape[2], 1]) as Tensor4D;
const fromPlanes = (p: tf.Tensor, shape: number[]) =>
  p.reshape([shape[0], shape[3], shape[1], shape[2]]).transpose([0, 2, 3, 1]) as Tensor4D;

/** Reflect-pad planes by (ry, rx) and convolve with one [kh, kw] kernel ('valid'). */
function convolvePlanes(planes: Tensor4D, kernel: Float32Array, kh: number, kw: number): Tensor4D {
  const [ry, rx] = [(kh - 1) / 2, (kw - 1) / 2];
  const padded = tf.mirrorPad(planes, [[0, 0], [ry, ry], [rx, rx], [0, 0]], 'reflect');
  return tf.conv2d(padded, tf.tensor4d(kernel, [kh, kw, 1, 1]), 1, 'valid');
}

/** Gaussian standard deviation in pixels (28x28 images; CIFAR-10-C uses 0.4..1 on 32x32). */
const BLUR_SIGMA = [0.5, 0.75, 1.0, 1.5, 2.0] as const;

/** Normalised 1-D Gaussian taps, radius ceil(3 sigma) capped below the image side (reflect padding). */
function gaussianTaps(sigma: number, maxRadius: number): Float32Array {
  const r = Math.max(1, Math.min(Math.ceil(3 * sigma), maxRadius));
  const taps = Float32Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const sum = taps.reduce((a, b) => a + b, 0);
  return taps.map((t) => t / sum);
}

export const gaussianBlur = defineSync(
  {
    name: 'gaussian-blur',
    description: 'separable Gaussian blur, reflect padding',
    table: { sigma: BLUR_SIGMA },
    random: false,
    differentiable: true,
  },
  (x, severity) => {
    const sigma = at(BLUR_SIGMA, severity);
    const taps = gaussianTaps(sigma, Math.min(x.shape[1], x.shape[2]) - 1);
    const vertical = convolvePlanes(toPlanes(x), taps, taps.length, 1);
    const y = fromPlanes(convolvePlanes(vertical, taps, 1, taps.length), x.shape);
    return { y, params: { sigma, radius: (taps.length - 1) / 2 } };
  },
);

/** Streak length in pixels (a line of that length through the pixel, uniform weights). */
const MOTION_LENGTH = [3, 5, 7, 9, 12] as const;

/** A normalised K x K line kernel of `length` pixels at `angle` radians (bilinear splatting). */
export function motionKernel(length: number, angle: number): { kernel: Float32Array; size: number } {
  const size = 2 * Math.ceil(length / 2) + 1;
  const r = (size - 1) / 2;
  const kernel = new Float32Array(size * size);
  const samples = 8 * length;
  for (let s = 0; s < samples; s++) {
    const t = ((s + 0.5) / samples - 0.5) * (length - 1);
    const px = r + t * Math.cos(angle);
    const py = r - t * Math.sin(angle);
    const x0 = Math.floor(px);
    const y0 = Math.floor(py);
    for (const [yy, xx, wgt] of [
      [y0, x0, (1 - (py - y0)) * (1 - (px - x0))],
      [y0, x0 + 1, (1 - (py - y0)) * (px - x0)],
      [y0 + 1, x0, (py - y0) * (1 - (px - x0))],
      [y0 + 1, x0 + 1, (py - y0) * (px - x0)],
    ]) {
      if (yy >= 0 && yy < size && xx >= 0 && xx < size) kernel[yy * size + xx] += wgt;
    }
  }
  const sum = kernel.reduce((a, b) => a + b, 0);
  return { kernel: kernel.map((v) => v / sum), size };
}

export const motionBlur = defineSync(
  {
    name: 'motion-blur',
    description: 'line kernel of the given length at a uniform random angle per image, reflect padding',
    table: { length: MOTION_LENGTH },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const n = x.shape[0];
    const length = Math.min(at(MOTION_LENGTH, severity), Math.min(x.shape[1], x.shape[2]) - 1);
    const rng = mulberry32(seed);
    const angles = Array.from({ length: n }, () => rng() * Math.PI);
    const images = tf.split(x, n, 0).map((xi, i) => {
      const { kernel, size } = motionKernel(length, angles[i]);
      return fromPlanes(convolvePlanes(toPlanes(xi as Tensor4D), kernel, size, size), xi.shape);
    });
    const anglesDeg = angles.map((a) => Math.round((a * 1800) / Math.PI) / 10);
    return { y: tf.concat(images, 0), params: { length, anglesDeg } };
  },
);
