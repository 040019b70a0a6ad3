/**
 * RePaint (Lugmayr et al. 2022): inpainting with an unconditional diffusion model. At every reverse step
 * t -> t_prev the known pixels are re-noised from the input, x_prev^known = q_sample(x, t_prev), the
 * unknown ones come from the reverse process, x_prev^unknown ~ p(x_prev | x_t), and the two are joined by
 * the mask. Resampling: each step is redone `resample` times, diffusing the joined x_prev back to t
 * (x_t = sqrt(abar_t / abar_prev) x_prev + sqrt(1 - abar_t / abar_prev) z) so the generated region
 * harmonises with the known one. Pure tf ops: differentiable in x (the mask is a constant).
 */
import { tf, type Tensor4D } from '../../backend/index.js';
import { fromModelScale, toModelScale } from '../../diffusion/gaussian-diffusion.js';
import type { DiffusionModel } from '../../models/diffusion-model.js';
import { mulberry32, type Rng } from '../../util/rng.js';

export interface InpaintOptions {
  /** Respaced reverse steps from tStart to 0. */
  steps?: number;
  /** RePaint's r: times each reverse step is done (1 = no resampling). */
  resample?: number;
  /** Step to start from (1..T); at T the masked region starts as pure noise. */
  tStart?: number;
  seed?: number;
}

export const INPAINT_DEFAULTS = { steps: 20, resample: 2 };

function noise(shape: readonly number[], rng: Rng): Tensor4D {
  return tf.randomNormal([...shape] as [number, number, number, number], 0, 1, 'float32', Math.floor(rng() * 2 ** 31)) as Tensor4D;
}

/**
 * Fill the pixels where `mask` [N,H,W,1] is 1 in x [N,H,W,C] (in [0,1]) with the diffusion model's
 * reconstruction consistent with the rest; pixels where the mask is 0 are returned unchanged.
 */
export function inpaint(model: DiffusionModel, x: Tensor4D, mask: Tensor4D, opts: InpaintOptions = {}): Tensor4D {
  const d = model.diffusion;
  const tStart = opts.tStart ?? d.T;
  const ts = d.respace(tStart, opts.steps ?? INPAINT_DEFAULTS.steps);
  const resample = Math.max(1, opts.resample ?? INPAINT_DEFAULTS.resample);
  const rng = mulberry32(opts.seed ?? 0);
  return tf.tidy(() => {
    const known = toModelScale(x);
    const keep = tf.sub(1, mask) as Tensor4D;
    const join = (unknown: Tensor4D, kn: Tensor4D) => tf.add(tf.mul(mask, unknown), tf.mul(keep, kn)) as Tensor4D;
    // the masked region's content is withheld: it starts from mid-grey (0 on the model scale)
    let xt = d.qSample(tf.mul(known, keep) as Tensor4D, tStart, noise(x.shape, rng));
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i];
      const tPrev = i + 1 < ts.length ? ts[i + 1] : 0;
      const rounds = tPrev > 0 ? resample : 1;
      for (let u = 0; u < rounds; u++) {
        const next = tf.tidy(() => {
          const x0 = d.predictX0(xt, t, model.eps(xt, tf.fill([x.shape[0]], t) as tf.Tensor1D));
          const unknown = d.ddpmStep(xt, t, tPrev, x0, noise(x.shape, rng));
          const kn = tPrev > 0 ? d.qSample(known, tPrev, noise(x.shape, rng)) : known;
          const xPrev = join(unknown, kn);
          if (u === rounds - 1) return xPrev;
          const a = d.abar[t] / d.abar[tPrev];
          return tf.add(tf.mul(xPrev, Math.sqrt(a)), tf.mul(noise(x.shape, rng), Math.sqrt(1 - a))) as Tensor4D;
        });
        xt = next;
      }
    }
    // exact input outside the mask (no rounding through the model scale)
    return tf.add(tf.mul(mask, fromModelScale(xt)), tf.mul(keep, x)) as Tensor4D;
  });
}
