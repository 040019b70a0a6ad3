/**
 * Patch localisation from the diffusion model's reconstructions. A patch is content the model does not
 * expect: noised to x_t and reconstructed in one shot (x0_hat), natural image regions come back close to
 * the input while a pasted patch is replaced by what the surrounding image suggests. The anomaly score is
 * the reconstruction residual |x0_hat - x| averaged over several t and noise draws (robust to a partly
 * trained model, whose residual is high along every edge too). The patch is the square whose mean score
 * most exceeds that of the ring around it (a multi-scale box contrast); it is reported when the contrast
 * passes a threshold, and grown to a mask.
 */
import { tf, type Tensor4D } from '../../backend/index.js';
import { fromModelScale, toModelScale } from '../../diffusion/gaussian-diffusion.js';
import type { DiffusionModel } from '../../models/diffusion-model.js';
import { mulberry32 } from '../../util/rng.js';
import type { Box } from './box.js';

export interface LocalizeOptions {
  /** Diffusion steps at which to reconstruct (1..T). */
  ts?: number[];
  /** Noise draws per t. */
  draws?: number;
  /** Candidate square sides, pixels. */
  sizes?: number[];
  /** Width of the ring around a square that serves as its background, pixels. */
  ring?: number;
  /** Detection threshold on the contrast (mean score inside - ring mean) * sqrt(side); 0 = always mask the best square. */
  minContrast?: number;
  /** Dilation of the found square, pixels. */
  grow?: number;
  seed?: number;
}

export const LOCALIZE_DEFAULTS: Required<Omit<LocalizeOptions, 'seed'>> = {
  ts: [300, 500],
  draws: 2,
  sizes: [3, 4, 5, 6, 7, 8, 9],
  ring: 2,
  minContrast: 0,
  grow: 0,
};

/** The best square of one image and its contrast; `detected` when the contrast passes the threshold. */
export interface FoundPatch extends Box {
  contrast: number;
  detected: boolean;
}

export interface Localization {
  /** 0/1 [N,H,W,1]: 1 where a patch is suspected (all 0 for images without a detection). */
  mask: Tensor4D;
  /** Per-pixel anomaly score [N,H,W,1] (mean reconstruction residual, pixel units). */
  score: Tensor4D;
  found: FoundPatch[];
}

/**
 * The anomaly score [N,H,W,1]: mean over t in `ts` and `draws` noise draws of |x0_hat(x_t) - x|, where
 * x_t = q_sample(x, t). Differentiable in x (adaptive attacks use it to evade localisation).
 */
export function anomalyScore(model: DiffusionModel, x: Tensor4D, ts: readonly number[], draws: number, seed: number): Tensor4D {
  const d = model.diffusion;
  const rng = mulberry32(seed);
  return tf.tidy(() => {
    const n = x.shape[0];
    const k = ts.length * draws;
    const x0 = toModelScale(x);
    const tile = tf.tile(x0, [k, 1, 1, 1]) as Tensor4D; // k copies, copy-major
    const tPer = Int32Array.from({ length: n * k }, (_, i) => ts[Math.floor(i / n / draws)]);
    const noise = tf.randomNormal(tile.shape, 0, 1, 'float32', Math.floor(rng() * 2 ** 31)) as Tensor4D;
    const xt = d.qSample(tile, tPer, noise);
    const rec = d.predictX0(xt, tPer, model.eps(xt, tf.tensor1d(tPer, 'float32')));
    const res = tf.abs(tf.sub(fromModelScale(rec), fromModelScale(tile))).mean(3, true);
    return tf.mean(tf.reshape(res, [k, n, x.shape[1], x.shape[2], 1]), 0) as Tensor4D;
  });
}

/** Integral image of a [H,W] map, (H+1) x (W+1). */
function integral(a: ArrayLike<number>, h: number, w: number): Float64Array {
  const I = new Float64Array((h + 1) * (w + 1));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) I[(y + 1) * (w + 1) + x + 1] = a[y * w + x] + I[y * (w + 1) + x + 1] + I[(y + 1) * (w + 1) + x] - I[y * (w + 1) + x];
  }
  return I;
}

/**
 * The square (side in `sizes`) maximising (mean score inside - mean over the surrounding ring) * sqrt(side)
 * in one image's score map [H*W].
 */
export function findPatch(score: ArrayLike<number>, h: number, w: number, o: Pick<Required<LocalizeOptions>, 'sizes' | 'ring' | 'minContrast'>): FoundPatch {
  const I = integral(score, h, w);
  const sum = (y0: number, x0: number, y1: number, x1: number): [number, number] => {
    [y0, x0, y1, x1] = [Math.max(0, y0), Math.max(0, x0), Math.min(h, y1), Math.min(w, x1)];
    return [I[y1 * (w + 1) + x1] - I[y0 * (w + 1) + x1] - I[y1 * (w + 1) + x0] + I[y0 * (w + 1) + x0], (y1 - y0) * (x1 - x0)];
  };
  let best: FoundPatch = { top: 0, left: 0, size: 0, contrast: -Infinity, detected: false };
  for (const s of o.sizes) {
    for (let y = 0; y + s <= h; y++) {
      for (let x = 0; x + s <= w; x++) {
        const [si, ni] = sum(y, x, y + s, x + s);
        const [so, no] = sum(y - o.ring, x - o.ring, y + s + o.ring, x + s + o.ring);
        const ringMean = no > ni ? (so - si) / (no - ni) : 0;
        const c = (si / ni - ringMean) * Math.sqrt(s);
        if (c > best.contrast) best = { top: y, left: x, size: s, contrast: c, detected: false };
      }
    }
  }
  best.detected = best.size > 0 && best.contrast >= o.minContrast;
  return best;
}

/** Localise a patch in each image of x [N,H,W,C] in [0,1]. Not differentiable (the mask is thresholded). */
export function localizePatch(model: DiffusionModel, x: Tensor4D, opts: LocalizeOptions = {}): Localization {
  const o = { ...LOCALIZE_DEFAULTS, ...opts };
  const [n, h, w] = x.shape;
  const score = anomalyScore(model, x, o.ts, o.draws, opts.seed ?? 0);
  const data = score.dataSync();
  const masks = new Float32Array(n * h * w);
  const found: FoundPatch[] = [];
  for (let i = 0; i < n; i++) {
    const f = findPatch(data.subarray(i * h * w, (i + 1) * h * w), h, w, o);
    found.push(f);
    if (!f.detected) continue;
    for (let y = Math.max(0, f.top - o.grow); y < Math.min(h, f.top + f.size + o.grow); y++) {
      for (let x = Math.max(0, f.left - o.grow); x < Math.min(w, f.left + f.size + o.grow); x++) masks[(i * h + y) * w + x] = 1;
    }
  }
  return { mask: tf.tensor4d(masks, [n, h, w, 1]), score, found };
}
