/**
 * The Gaussian diffusion *process* (Ho et al. 2020; cosine schedule of Nichol & Dhariwal 2021).
 * It knows nothing of the network: every function that needs one takes `eps(xt, t)`, a noise
 * predictor on the model's input scale [-1, 1].
 *
 * Notation: t in 1..T (integer step), abar[t] = prod_{s<=t} (1 - beta_s), abar[0] = 1.
 * q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I).
 */
import { tf, type Tensor4D } from '../backend/index.js';

/** Noise predictor: x_t [N,H,W,C] in model scale, t per example -> predicted epsilon. */
export type EpsModel = (xt: Tensor4D, t: tf.Tensor1D) => Tensor4D;
/** Guidance of a reverse step towards a reference image y (model scale) with weight `scale` in [0, 1] (0 = none). */
export interface Guide {
  y: Tensor4D;
  scale: number;
}

export class GaussianDiffusion {
  readonly T: number;
  /** abar[t] for t = 0..T (abar[0] = 1). */
  readonly abar: Float64Array;
  readonly beta: Float64Array; // beta[t], t = 1..T (beta[0] = 0)

  constructor(T = 1000, s = 0.008) {
    this.T = T;
    const f = (t: number) => Math.cos(((t / T + s) / (1 + s)) * (Math.PI / 2)) ** 2;
    this.abar = new Float64Array(T + 1);
    this.beta = new Float64Array(T + 1);
    this.abar[0] = 1;
    for (let t = 1; t <= T; t++) {
      // clip beta at 0.999 as in improved-diffusion to avoid a singular last step
      this.beta[t] = Math.min(1 - f(t) / f(t - 1), 0.999);
      this.abar[t] = this.abar[t - 1] * (1 - this.beta[t]);
    }
  }

  /** Noise level of x_t relative to the signal: sqrt((1 - abar_t) / abar_t), on the model's scale. */
  sigmaAt(t: number): number {
    return Math.sqrt((1 - this.abar[t]) / this.abar[t]);
  }

  /**
   * The step t whose noise-to-signal ratio is closest to `sigmaModel` (Carlini et al. 2023):
   * x + N(0, sigma^2) in [0,1] pixels is, after scaling to [-1,1] (sigmaModel = 2 sigma) and
   * multiplying by sqrt(abar_t), distributed exactly as x_t.
   */
  tForSigma(sigmaModel: number): number {
    let best = 1;
    let err = Infinity;
    for (let t = 1; t <= this.T; t++) {
      const e = Math.abs(this.sigmaAt(t) - sigmaModel);
      if (e < err) {
        err = e;
        best = t;
      }
    }
    return best;
  }

  /** q_sample: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps. `t` may be a number or per-example. */
  qSample(x0: Tensor4D, t: number | Int32Array, eps: Tensor4D): Tensor4D {
    return tf.tidy(() => {
      const [a, b] = this.coefs(t, x0.shape[0], (ab) => [Math.sqrt(ab), Math.sqrt(1 - ab)]);
      return x0.mul(a).add(eps.mul(b)) as Tensor4D;
    });
  }

  /** x0 from x_t and a noise prediction: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clipped to [-1, 1]. */
  predictX0(xt: Tensor4D, t: number | Int32Array, eps: Tensor4D, clip = true): Tensor4D {
    return tf.tidy(() => {
      const [a, b] = this.coefs(t, xt.shape[0], (ab) => [1 / Math.sqrt(ab), Math.sqrt(1 - ab) / Math.sqrt(ab)]);
      const x0 = xt.mul(a).sub(eps.mul(b)) as Tensor4D;
      return clip ? (x0.clipByValue(-1, 1) as Tensor4D) : x0;
    });
  }

  /** epsilon implied by x_t and an x0 estimate (used after x0 clipping, e.g. by DDIM). */
  predictEps(xt: Tensor4D, t: number, x0: Tensor4D): Tensor4D {
    return tf.tidy(() => {
      const ab = this.abar[t];
      return xt.sub(x0.mul(Math.sqrt(ab))).div(Math.sqrt(1 - ab)) as Tensor4D;
    });
  }

  /**
   * One ancestral DDPM step from t to t_prev (< t), possibly skipping steps (respaced DDPM):
   * posterior q(x_prev | x_t, x0_hat) with beta' = 1 - abar_t / abar_prev. `noise` ~ N(0, I).
   */
  ddpmStep(xt: Tensor4D, t: number, tPrev: number, x0: Tensor4D, noise: Tensor4D, guide?: Guide): Tensor4D {
    return tf.tidy(() => {
      const ab = this.abar[t];
      const abPrev = this.abar[tPrev];
      const betaT = 1 - ab / abPrev;
      const c0 = (Math.sqrt(abPrev) * betaT) / (1 - ab);
      const ct = (Math.sqrt(1 - betaT) * (1 - abPrev)) / (1 - ab);
      // Guidance towards a reference y (GDMP, Wang et al. 2022: mean -= k (x_t - sqrt(abar_t) y), the gradient
      // of an MSE distance to y diffused to t), with k = scale * ct so that scale in [0, 1] reads as the weight
      // of y's diffused mean in the x_t the step starts from; beyond 1 the step overshoots and diverges.
      const g = guide && guide.scale > 0 ? Math.min(1, guide.scale) : 0;
      const from = g > 0 ? xt.mul(1 - g).add(guide!.y.mul(g * Math.sqrt(ab))) : xt;
      const mean = x0.mul(c0).add(from.mul(ct));
      if (tPrev === 0) return mean as Tensor4D;
      const variance = (betaT * (1 - abPrev)) / (1 - ab);
      return mean.add(noise.mul(Math.sqrt(variance))) as Tensor4D;
    });
  }

  /** One deterministic DDIM step (eta = 0) from t to t_prev given x0_hat and eps_hat. */
  ddimStep(t: number, tPrev: number, x0: Tensor4D, eps: Tensor4D): Tensor4D {
    void t;
    return tf.tidy(() => {
      const abPrev = this.abar[tPrev];
      if (tPrev === 0) return x0;
      return x0.mul(Math.sqrt(abPrev)).add(eps.mul(Math.sqrt(1 - abPrev))) as Tensor4D;
    });
  }

  /** Evenly spaced steps tStar = t_K > ... > t_1 > 0 for a K-step reverse pass from tStar. */
  respace(tStar: number, steps: number): number[] {
    const k = Math.max(1, Math.min(steps, tStar));
    const ts: number[] = [];
    for (let i = k; i >= 1; i--) ts.push(Math.max(1, Math.round((tStar * i) / k)));
    return [...new Set(ts)];
  }

  /** Training loss (simple epsilon MSE, Ho et al.) for a batch x0 with random t and noise. */
  loss(eps: EpsModel, x0: Tensor4D, t: Int32Array, noise: Tensor4D): tf.Scalar {
    return tf.tidy(() => {
      const xt = this.qSample(x0, t, noise);
      const pred = eps(xt, tf.tensor1d(t, 'float32'));
      return pred.sub(noise).square().mean() as tf.Scalar;
    });
  }

  private coefs(t: number | Int32Array, n: number, f: (abar: number) => [number, number]): [tf.Tensor | number, tf.Tensor | number] {
    if (typeof t === 'number') return f(this.abar[t]);
    if (t.length !== n) throw new Error(`per-example t has ${t.length} entries for a batch of ${n}`);
    const a = new Float32Array(n);
    const b = new Float32Array(n);
    for (let i = 0; i < n; i++) [a[i], b[i]] = f(this.abar[t[i]]);
    return [tf.tensor4d(a, [n, 1, 1, 1]), tf.tensor4d(b, [n, 1, 1, 1])];
  }
}

/** Pixels [0,1] -> model scale [-1,1] and back. */
export const toModelScale = (x: Tensor4D): Tensor4D => tf.tidy(() => x.mul(2).sub(1) as Tensor4D);
export const fromModelScale = (x: Tensor4D): Tensor4D => tf.tidy(() => x.add(1).div(2).clipByValue(0, 1) as Tensor4D);
