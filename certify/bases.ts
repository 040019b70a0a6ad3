/**
 * Base classifiers f for randomized smoothing. Any `BaseClassifier` works (a user function included);
 * these two are the ones in the literature:
 *  - noisyBase: the classifier applied to x + delta directly (Cohen et al. 2019; the classifier should be
 *    trained with Gaussian noise of the same sigma);
 *  - denoisedBase: denoised smoothing with an off-the-shelf diffusion model (Carlini et al., "(Certified!!)
 *    Adversarial Robustness for Free!", ICLR 2023): one denoising step from the diffusion step whose noise
 *    level matches sigma, then the classifier.
 * The certificate holds whatever f is; these choices only decide how accurate the smoothed classifier is.
 */
import { tf, type Tensor, type Tensor1D, type Tensor2D, type Tensor4D } from '../src/backend/index.js';
import type { LogitsFn } from '../src/types.js';
import { type EpsModel, type GaussianDiffusion, fromModelScale } from '../src/diffusion/gaussian-diffusion.js';
import { cryptoSeed, mulberry32 } from '../src/util/rng.js';
import type { BaseClassifier } from './core.js';

/**
 * The diffusion step t whose noise-to-signal ratio sqrt((1 - abar_t) / abar_t) is nearest to 2 sigma:
 * pixel noise sigma on [0, 1] images is noise 2 sigma on the model's [-1, 1] scale.
 */
export function sigmaToT(diffusion: GaussianDiffusion, sigma: number): number {
  return diffusion.tForSigma(2 * sigma);
}

/** The pixel-space sigma ([0, 1] images) that diffusion step t corresponds to; inverse of sigmaToT on 1..T. */
export function tToSigma(diffusion: GaussianDiffusion, t: number): number {
  return diffusion.sigmaAt(t) / 2;
}

/** Cohen et al.: the classifier sees the noisy image x + delta itself. */
export function noisyBase(logitsFn: LogitsFn): BaseClassifier {
  return (xNoisy) => logitsFn(xNoisy);
}

export interface DenoisedBaseOptions {
  /** smoothing noise level, pixel units ([0, 1] images) */
  sigma: number;
  /** reverse steps from tStar; 1 (default) is Carlini et al.'s one-shot x0 prediction */
  steps?: number;
  /** sampler for steps > 1: deterministic DDIM (default) or ancestral DDPM */
  sampler?: 'ddim' | 'ddpm';
  /** seed of the DDPM sampler's noise (default from the OS CSPRNG) */
  seed?: number;
  /**
   * Most noisy images per pass through the network (default 128): a certification batch of any size is
   * denoised in chunks of this many. The one-shot and DDIM answers do not depend on it; it bounds memory (a
   * 1,000-image U-Net pass overran the wasm heap) and smaller passes run faster on a CPU (measured: 128 per
   * pass ~15-20% more noise samples/s than 500). With the DDPM sampler each chunk draws its own noise.
   */
  chunk?: number;
}

export type DenoisedBase = BaseClassifier & {
  /** the diffusion step the noisy image is treated as, sigmaToT(sigma) */
  readonly tStar: number;
};

/**
 * Denoised smoothing. For a noisy image x + delta, delta ~ N(0, sigma^2 I) on [0, 1] pixels, the model input
 * x_t = sqrt(abar_t) * (2 (x + delta) - 1) with t = sigmaToT(sigma) has the law of the forward process at t
 * (up to the nearest-step mismatch of sigma), so predictX0 of the noise predictor denoises it in one shot.
 *
 * x + delta is NOT clipped to [0, 1]: the certificate is a statement about f(x + delta) under exactly Gaussian
 * delta, and clipping before scaling would also make x_t no longer distributed as the forward process.
 * The denoised x0 is clipped to [-1, 1] (predictX0) and mapped back to [0, 1] before the classifier.
 */
export function denoisedBase(diffusion: GaussianDiffusion, eps: EpsModel, logitsFn: LogitsFn, opts: DenoisedBaseOptions): DenoisedBase {
  const { sigma, steps = 1, sampler = 'ddim', chunk = 128 } = opts;
  if (!(sigma > 0)) throw new RangeError(`sigma must be > 0, got ${sigma}`);
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer, got ${steps}`);
  if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`chunk must be a positive integer, got ${chunk}`);
  const tStar = sigmaToT(diffusion, sigma);
  const scale = Math.sqrt(diffusion.abar[tStar]);
  const ts = steps > 1 ? diffusion.respace(tStar, steps) : [tStar];
  const rng = mulberry32(opts.seed ?? cryptoSeed());
  const pass = (xNoisy: Tensor4D) =>
    tf.tidy(() => {
      const n = xNoisy.shape[0];
      let xt = xNoisy.mul(2).sub(1).mul(scale) as Tensor4D; // no clipping: see above
      let x0 = xt;
      for (let i = 0; i < ts.length; i++) {
        const t = ts[i];
        const epsHat = eps(xt, tf.fill([n], t, 'float32') as Tensor1D);
        x0 = diffusion.predictX0(xt, t, epsHat);
        if (i === ts.length - 1) break;
        const tPrev = ts[i + 1];
        xt =
          sampler === 'ddpm'
            ? diffusion.ddpmStep(xt, t, tPrev, x0, tf.randomNormal(xt.shape, 0, 1, 'float32', Math.floor(rng() * 2 ** 31)) as Tensor4D)
            : diffusion.ddimStep(t, tPrev, x0, epsHat);
      }
      return logitsFn(fromModelScale(x0));
    });
  const base = (xNoisy: Tensor4D): Tensor => {
    const n = xNoisy.shape[0];
    if (n <= chunk) return pass(xNoisy);
    const parts: Tensor[] = [];
    try {
      for (let s = 0; s < n; s += chunk) parts.push(tf.tidy(() => pass(xNoisy.slice([s, 0, 0, 0], [Math.min(chunk, n - s), -1, -1, -1]))));
      return tf.concat(parts, 0);
    } finally {
      tf.dispose(parts);
    }
  };
  return Object.assign(base, { tStar });
}

/**
 * The dds base's denoising alone: a noisy image x + delta in, its one-shot x0 ([0, 1] pixels) out — the base with an
 * identity classifier, for training on exactly what the base feeds its classifier.
 */
export function oneShotDenoiser(diffusion: GaussianDiffusion, eps: EpsModel, opts: DenoisedBaseOptions): ((xNoisy: Tensor4D) => Tensor4D) & { readonly tStar: number } {
  const base = denoisedBase(diffusion, eps, (x) => x as unknown as Tensor2D, opts);
  return Object.assign((xNoisy: Tensor4D) => base(xNoisy) as Tensor4D, { tStar: base.tStar });
}
