/**
 * Purification modes as short compositions of the diffusion process and the network:
 * - diffpure (Nie et al. 2022): diffuse x to t* with q_sample, run `steps` respaced DDPM (or DDIM)
 *   reverse steps back to 0, return x0_hat;
 * - oneshot (denoised smoothing, Carlini et al. 2023): noise at sigma (t with sqrt((1-abar)/abar) = 2 sigma),
 *   one x0 prediction;
 * - none: identity;
 * - patch: localise a patch from the model's reconstruction residuals and inpaint it (RePaint), see patch/;
 * - auto: patch, then diffpure;
 * - restore: blind restoration of any corruption with the restoration model, see restore.ts.
 * `purify` is pure tf ops, so attacks can differentiate through every reverse step.
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { fromModelScale, toModelScale } from '../diffusion/gaussian-diffusion.js';
import type { DiffusionModel } from '../models/diffusion-model.js';
import { cryptoSeed, mulberry32, type Rng } from '../util/rng.js';
import { PurifyError } from './errors.js';
import { resolveOptions, type PurifyOptions, type ResolvedOptions } from './options.js';
import { purifyAuto, purifyPatch, type PatchPurified } from './patch/index.js';
import { purifyRestore } from './restore.js';

export interface CallOptions {
  seed?: number;
}

/**
 * Most images per pass through the U-Net. A larger batch is purified in consecutive slices of this many
 * (each with its own seed drawn from the call's seed, so the result is still reproducible): one pass over
 * 1,000 images overran the 4 GB wasm heap ("memory access out of bounds", leaving tensors behind), and
 * 128-image passes were also faster on a CPU than 500-image ones. Batches up to this size are unchanged.
 */
export const MAX_PASS = 128;

export class Purifier {
  readonly options: ResolvedOptions;
  readonly inputShape: [number, number, number];
  constructor(
    readonly model: DiffusionModel,
    options: PurifyOptions = {},
  ) {
    this.options = resolveOptions(options, model.diffusion.T);
    this.inputShape = [28, 28, model.meta.unet.imageChannels];
  }

  /** The diffusion step used by this purifier's mode. */
  get t(): number {
    const o = this.options;
    if (o.mode === 'oneshot' && o.sigma !== undefined) return this.model.diffusion.tForSigma(2 * o.sigma);
    return o.tStar;
  }

  /** x [N,H,W,C] in [0,1] -> purified [N,H,W,C] in [0,1]. Differentiable; caller disposes. */
  purify(x: Tensor4D, call: CallOptions = {}): Tensor4D {
    if (this.options.validate) this.check(x);
    const seed = call.seed ?? this.options.seed ?? cryptoSeed();
    if (x.shape[0] <= MAX_PASS) return this.purifyPass(x, seed);
    return inSlices(x, seed, (part, s) => [this.purifyPass(part, s)])[0];
  }

  /** One pass of `purify` over at most MAX_PASS images. */
  private purifyPass(x: Tensor4D, seed: number): Tensor4D {
    const rng = mulberry32(seed);
    switch (this.options.mode) {
      case 'none':
        return x.clone();
      case 'oneshot':
        return this.oneshot(x, rng);
      case 'patch':
      case 'auto': {
        const r = this.patch(x, seed);
        r.mask.dispose();
        return r.x;
      }
      case 'restore': {
        const { restorer, steps, sigma } = this.options;
        return purifyRestore(this.model, x, { restorer, steps, sigma }, (y) => this.diffpure(y, rng));
      }
      default:
        return this.diffpure(x, rng);
    }
  }

  /**
   * `purify`, and for the modes that inpaint a region (patch, auto) that region as a 0/1 mask [N,H,W,1]
   * (1 = inpainted; null for the other modes). The same images as `purify` with the same seed; the caller
   * disposes both tensors.
   */
  purifyWithMask(x: Tensor4D, call: CallOptions = {}): { purified: Tensor4D; mask: Tensor4D | null } {
    const { mode, validate } = this.options;
    if (mode !== 'patch' && mode !== 'auto') return { purified: this.purify(x, call), mask: null };
    if (validate) this.check(x);
    const seed = call.seed ?? this.options.seed ?? cryptoSeed();
    if (x.shape[0] <= MAX_PASS) {
      const r = this.patch(x, seed);
      return { purified: r.x, mask: r.mask };
    }
    const [purified, mask] = inSlices(x, seed, (part, s) => {
      const r = this.patch(part, s);
      return [r.x, r.mask];
    });
    return { purified, mask };
  }

  /** patch: localise and inpaint; auto: then diffpure the result. */
  private patch(x: Tensor4D, seed: number): PatchPurified {
    if (this.options.mode === 'patch') return purifyPatch(this.model, x, { seed });
    const rng = mulberry32(seed);
    return purifyAuto(this.model, x, (y) => this.diffpure(y, rng), { seed });
  }

  private noise(shape: readonly number[], rng: Rng): Tensor4D {
    return tf.randomNormal([...shape] as [number, number, number, number], 0, 1, 'float32', Math.floor(rng() * 2 ** 31)) as Tensor4D;
  }

  private epsAt(xt: Tensor4D, t: number): Tensor4D {
    return this.model.eps(xt, tf.fill([xt.shape[0]], t) as tf.Tensor1D);
  }

  private oneshot(x: Tensor4D, rng: Rng): Tensor4D {
    const d = this.model.diffusion;
    const t = this.t;
    return tf.tidy(() => {
      const xt = d.qSample(toModelScale(x), t, this.noise(x.shape, rng));
      const x0 = d.predictX0(xt, t, this.epsAt(xt, t));
      return fromModelScale(x0);
    });
  }

  private diffpure(x: Tensor4D, rng: Rng): Tensor4D {
    const d = this.model.diffusion;
    const { tStar, steps, sampler, guidance } = this.options;
    const ts = d.respace(tStar, steps);
    const y = guidance > 0 ? toModelScale(x) : undefined;
    // One tidy per reverse step: only x_t survives a step, so memory stays at one U-Net pass
    // (a single tidy around all steps held every intermediate and exhausted the 4 GB wasm heap
    // at batch 64). Under a gradient tape the tape keeps what backprop needs.
    let xt = tf.tidy(() => d.qSample(toModelScale(x), tStar, this.noise(x.shape, rng)));
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i];
      const tPrev = i + 1 < ts.length ? ts[i + 1] : 0;
      const prev = xt;
      xt = tf.tidy(() => {
        const eps = this.epsAt(prev, t);
        const x0 = d.predictX0(prev, t, eps);
        if (tPrev === 0) return fromModelScale(x0);
        if (sampler === 'ddim') return d.ddimStep(t, tPrev, x0, d.predictEps(prev, t, x0));
        return d.ddpmStep(prev, t, tPrev, x0, this.noise(x.shape, rng), y && { y, scale: guidance });
      });
      prev.dispose();
    }
    y?.dispose();
    return xt;
  }

  /** Typed checks: rank 4, the model's H/W/C, finite values in [0, 1]. */
  check(x: unknown): asserts x is Tensor4D {
    if (!(x instanceof tf.Tensor)) throw new PurifyError('BAD_INPUT', 'expected a tf.Tensor4D [N,H,W,C] in [0,1]');
    const [h, w, c] = this.inputShape;
    if (x.rank !== 4 || x.shape[1] !== h || x.shape[2] !== w || x.shape[3] !== c || x.shape[0] < 1) {
      throw new PurifyError('BAD_SHAPE', `expected shape [N,${h},${w},${c}], got [${x.shape.join(',')}]`);
    }
    if (x.dtype !== 'float32') throw new PurifyError('BAD_INPUT', `expected float32, got ${x.dtype}`);
    const [bad, lo, hi] = tf.tidy(() => tf.stack([x.isNaN().any().cast('float32'), x.min(), x.max()]).dataSync());
    if (bad || !Number.isFinite(lo) || !Number.isFinite(hi)) throw new PurifyError('BAD_VALUES', 'input contains NaN or Inf');
    if (lo < 0 || hi > 1) throw new PurifyError('BAD_VALUES', `values must lie in [0, 1], got [${lo}, ${hi}]`);
  }
}

/**
 * f over consecutive slices of at most MAX_PASS images of x, each with a seed drawn in order from `seed`;
 * the k outputs of the slices concatenated along the batch. Slicing and concatenation are differentiable,
 * so gradients still flow through every pass; each slice's intermediates are freed before the next.
 */
function inSlices(x: Tensor4D, seed: number, f: (part: Tensor4D, seed: number) => Tensor4D[]): Tensor4D[] {
  const rng = mulberry32(seed);
  const n = x.shape[0];
  const outs: Tensor4D[][] = [];
  try {
    for (let s = 0; s < n; s += MAX_PASS) {
      const part = x.slice([s, 0, 0, 0], [Math.min(MAX_PASS, n - s), -1, -1, -1]);
      try {
        outs.push(f(part, Math.floor(rng() * 2 ** 31)));
      } finally {
        part.dispose();
      }
    }
    return outs[0].map((_, k) => tf.concat(outs.map((o) => o[k]), 0));
  } finally {
    tf.dispose(outs.flat());
  }
}
