/**
 * Denoising quality of a diffusion model: add pixel-scale Gaussian noise sigma to clean images, predict
 * x0 in one shot at the matching t (sqrt((1-abar_t)/abar_t) = 2 sigma), report PSNR (dB, peak 1) of
 * the noisy input and of the reconstruction against the clean image. The noisy input is not clipped.
 */
import { tf, type Tensor4D } from '../backend/index.js';
import type { Dataset } from '../data/index.js';
import type { DiffusionModel } from '../models/diffusion-model.js';
import { fromModelScale, toModelScale } from '../diffusion/gaussian-diffusion.js';

export interface PsnrRow {
  sigma: number;
  t: number;
  noisyPsnr: number;
  denoisedPsnr: number;
}

export function psnr(mse: number): number {
  return 10 * Math.log10(1 / Math.max(mse, 1e-12));
}

export function denoisingPsnr(model: DiffusionModel, ds: Dataset, sigmas: number[], seed = 0, batchSize = 100): PsnrRow[] {
  const d = model.diffusion;
  const size = ds.shape[0] * ds.shape[1] * ds.shape[2];
  return sigmas.map((sigma, si) => {
    const t = d.tForSigma(2 * sigma);
    let noisyMse = 0;
    let denMse = 0;
    for (let s = 0; s < ds.count; s += batchSize) {
      const e = Math.min(ds.count, s + batchSize);
      const [a, b] = tf.tidy(() => {
        const x = tf.tensor4d(ds.images.subarray(s * size, e * size), [e - s, ...ds.shape]);
        const noisy = x.add(tf.randomNormal(x.shape, 0, sigma, 'float32', seed + 1000 * si + s)) as Tensor4D;
        const xt = toModelScale(noisy).mul(Math.sqrt(d.abar[t])) as Tensor4D;
        const x0 = fromModelScale(d.predictX0(xt, t, model.eps(xt, tf.fill([e - s], t) as tf.Tensor1D)));
        // MSE summed over images; the reported PSNR is that of the mean MSE over the whole set
        return [noisy.sub(x).square().mean().dataSync()[0] * (e - s), x0.sub(x).square().mean().dataSync()[0] * (e - s)];
      });
      noisyMse += a;
      denMse += b;
    }
    return { sigma, t, noisyPsnr: psnr(noisyMse / ds.count), denoisedPsnr: psnr(denMse / ds.count) };
  });
}
