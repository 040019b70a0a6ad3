/**
 * Blind restoration as a diffusion process: one network that denoises (diffpure, oneshot) and also
 * reverses other corruptions (blur, JPEG, pixelation, banding, patches, several at once). Like
 * gaussian-diffusion.ts it knows nothing of the network: it takes `eps(x, t)`.
 *
 * Conditioning, the choice that lets one network serve every mode: the network's time input t is a
 * *level*, the noise-equivalent size of what separates its input from the clean image. A degraded
 * image y with clean original x0 (both on the model scale [-1, 1]) has the residual r = y - x0 and the
 * level sigma = rms(r); it is presented to the network as the diffusion state at the step t whose
 * noise-to-signal ratio sigma_t = sqrt((1 - abar_t) / abar_t) is closest to sigma (tForSigma):
 *
 *     x_in = sqrt(abar_t) y,     target eps = (y - x0) / sigma_t     (RMS about 1, like Gaussian noise)
 *
 * For y = x0 + sigma_t n this is the DDPM objective itself (x_in = x_t, eps = n), so diffusion training
 * and restoration training are one loss on one network, and `predictX0` returns x0_hat = y - sigma_t
 * eps_hat for both. The "severity" of cold diffusion becomes this level; a blind model estimates it
 * from y alone (the level net, src/models/level-net.ts, predicts log sigma).
 *
 * Design (a), cold-diffusion restoration with a predicted severity (Bansal et al. 2022, Algorithm 2):
 *     for s = t_hat .. 1:   z_{s-1} = z_s - D(x0_hat, s) + D(x0_hat, s-1)
 * with D(x0, s) = x0 + sigma_s e, e = (z_s - x0_hat) / sigma_s: a degradation of level s in the
 * direction the network sees (a blind model does not know the true D). On the unscaled state
 * z = x_t / sqrt(abar_t) this is deterministic DDIM from t_hat to 0 in `steps` steps.
 * Design (b): one x0 prediction at t_hat (`restoreX0`), then a short diffpure pass (the purifier's).
 */
import { tf, type Tensor4D } from '../backend/index.js';
import type { EpsModel, GaussianDiffusion } from './gaussian-diffusion.js';

/** Smallest level a target is given (model scale): below sigma_1 = 0.0064 every level maps to t = 1. */
export const LEVEL_FLOOR = 0.005;

/** [n] numbers -> a [n,1,1,1] tensor that scales each example of a batch. */
const perExample = (v: ArrayLike<number>): tf.Tensor4D => tf.tensor4d(Float32Array.from(v), [v.length, 1, 1, 1]);

/** Per image: the residual's RMS on the model scale, for y and x0 given in pixels [0, 1] (flat, n images). */
export function residualLevels(y: Float32Array, x0: Float32Array, n: number): Float32Array {
  const size = y.length / n;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = i * size; j < (i + 1) * size; j++) s += (y[j] - x0[j]) ** 2;
    out[i] = 2 * Math.sqrt(s / size); // pixel [0,1] -> model [-1,1] doubles distances
  }
  return out;
}

/** The step t presented to the network for each level (model-scale sigma). */
export function levelSteps(d: GaussianDiffusion, sigma: ArrayLike<number>): Int32Array {
  return Int32Array.from(sigma as ArrayLike<number>, (s) => d.tForSigma(Math.max(s, LEVEL_FLOOR)));
}

/** A restoration training pair on the model scale: network input and target epsilon for levels t. */
export function restorationPair(d: GaussianDiffusion, y: Tensor4D, x0: Tensor4D, t: Int32Array): { xIn: Tensor4D; eps: Tensor4D } {
  return tf.tidy(() => ({
    xIn: y.mul(perExample(Array.from(t, (s) => Math.sqrt(d.abar[s])))) as Tensor4D,
    eps: y.sub(x0).mul(perExample(Array.from(t, (s) => 1 / d.sigmaAt(s)))) as Tensor4D,
  }));
}

/** Design (b), first half: x0_hat from the degraded y (model scale) at levels t, in one network pass. */
export function restoreX0(d: GaussianDiffusion, eps: EpsModel, y: Tensor4D, t: Int32Array): Tensor4D {
  return tf.tidy(() => {
    const xIn = y.mul(perExample(Array.from(t, (s) => Math.sqrt(d.abar[s])))) as Tensor4D;
    return d.predictX0(xIn, t, eps(xIn, tf.tensor1d(t, 'float32')));
  });
}

/**
 * Level of image i after k of `steps` steps of design (a): evenly spaced from t_i down to 0.
 * Images already at t = 1 (judged clean) stay there until the last step.
 */
export function coldSchedule(t: Int32Array, steps: number): Int32Array[] {
  const k = Math.max(1, steps);
  return Array.from({ length: k + 1 }, (_, j) => Int32Array.from(t, (ti) => (j === k ? 0 : Math.max(1, Math.round((ti * (k - j)) / k)))));
}

/**
 * Design (a): cold-diffusion restoration (Bansal et al. Algorithm 2 with the blind D above) of y
 * (model scale) from per-image levels t, in `steps` network passes; returns x0_hat on the model scale.
 * One tidy per step (only z survives a step); differentiable in y.
 */
export function restoreCold(d: GaussianDiffusion, eps: EpsModel, y: Tensor4D, t: Int32Array, steps: number): Tensor4D {
  const schedule = coldSchedule(t, steps);
  let z = y.clone();
  for (let j = 0; j + 1 < schedule.length; j++) {
    const [ts, next] = [schedule[j], schedule[j + 1]];
    const prev = z;
    z = tf.tidy(() => {
      const xIn = prev.mul(perExample(Array.from(ts, (s) => Math.sqrt(d.abar[s])))) as Tensor4D;
      const x0 = d.predictX0(xIn, ts, eps(xIn, tf.tensor1d(ts, 'float32')));
      // z - D(x0, s) + D(x0, s-1) = x0 + (sigma_{s-1} / sigma_s) (z - x0); sigma_0 = 0 ends at x0
      const ratio = perExample(Array.from(ts, (s, i) => (next[i] === 0 ? 0 : d.sigmaAt(next[i]) / d.sigmaAt(s))));
      return x0.add(prev.sub(x0).mul(ratio)) as Tensor4D;
    });
    prev.dispose();
  }
  return z;
}
