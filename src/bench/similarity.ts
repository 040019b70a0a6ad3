/**
 * Full-reference image quality per image, for images [N,H,W,C] in [0,1] (peak 1):
 * - PSNR = 10 log10(1 / MSE) dB, MSE over all pixels and channels (floored at 1e-10: identical images read 100 dB);
 * - SSIM (Wang, Bovik, Sheikh & Simoncelli 2004) as in their reference ssim_index.m: 11x11 Gaussian window,
 *   sigma 1.5, K1 = 0.01, K2 = 0.03, L = 1, population (co)variances, the mean of the SSIM map over the
 *   'valid' positions (the window inside the image) and the channels.
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { psnr } from './quality.js';

export const PSNR_MAX_DB = 100;

export function psnrPerImage(x: Tensor4D, ref: Tensor4D): Float32Array {
  const mse = tf.tidy(() => x.sub(ref).square().mean([1, 2, 3]).dataSync() as Float32Array);
  return Float32Array.from(mse, (m) => Math.min(PSNR_MAX_DB, psnr(Math.max(m, 1e-10))));
}

/** Normalised 1-D Gaussian of `size` taps (odd), std `sigma`. */
export function gaussianWindow(size = 11, sigma = 1.5): Float32Array {
  const r = (size - 1) / 2;
  const g = Float32Array.from({ length: size }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const s = g.reduce((a, b) => a + b, 0);
  return g.map((v) => v / s);
}

export const SSIM_CONSTANTS = { window: 11, sigma: 1.5, k1: 0.01, k2: 0.03 } as const;

export function ssimPerImage(x: Tensor4D, ref: Tensor4D): Float32Array {
  const { window: size, sigma, k1, k2 } = SSIM_CONSTANTS;
  const [n, h, w, c] = x.shape;
  if (h < size || w < size) throw new RangeError(`ssim: images must be at least ${size}x${size}, got ${h}x${w}`);
  return tf.tidy(() => {
    const g = gaussianWindow(size, sigma);
    const w2 = tf.outerProduct(tf.tensor1d(g), tf.tensor1d(g)); // [size, size]
    // the five local statistics of every channel in one depthwise convolution
    const stats = tf.concat([x, ref, x.square(), ref.square(), x.mul(ref)], 3) as Tensor4D;
    const filter = w2.reshape([size, size, 1, 1]).tile([1, 1, 5 * c, 1]) as tf.Tensor4D;
    const m = tf.depthwiseConv2d(stats, filter, 1, 'valid');
    const part = (i: number) => m.slice([0, 0, 0, i * c], [-1, -1, -1, c]);
    const [mx, my, exx, eyy, exy] = [0, 1, 2, 3, 4].map(part);
    const c1 = k1 ** 2;
    const c2 = k2 ** 2;
    const mxy = mx.mul(my);
    const vx = exx.sub(mx.square());
    const vy = eyy.sub(my.square());
    const cov = exy.sub(mxy);
    const num = mxy.mul(2).add(c1).mul(cov.mul(2).add(c2));
    const den = mx.square().add(my.square()).add(c1).mul(vx.add(vy).add(c2));
    return num.div(den).reshape([n, -1]).mean(1).dataSync() as Float32Array;
  });
}
