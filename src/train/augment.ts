import { imageSize, type Dataset, type DatasetName } from '../data/index.js';
import { mulberry32, permutation, type Rng } from '../util/rng.js';

/** Whether a horizontal flip keeps an image's class: not for digits (a mirrored digit is not the same digit). */
export function mirrorKeepsClass(dataset: DatasetName): boolean {
  return dataset !== 'mnist';
}

/** Cheap label-preserving augmentation on raw [H,W,1] images: random shift (zero fill) and horizontal flip. */
export function augmentInto(dst: Float32Array, src: Float32Array, h: number, w: number, c: number, rng: Rng, maxShift = 2, flip = true): void {
  const dy = Math.floor(rng() * (2 * maxShift + 1)) - maxShift;
  const dx = Math.floor(rng() * (2 * maxShift + 1)) - maxShift;
  const mirror = flip && rng() < 0.5;
  dst.fill(0);
  for (let y = 0; y < h; y++) {
    const sy = y - dy;
    if (sy < 0 || sy >= h) continue;
    for (let x = 0; x < w; x++) {
      let sx = x - dx;
      if (sx < 0 || sx >= w) continue;
      if (mirror) sx = w - 1 - sx;
      for (let k = 0; k < c; k++) dst[(y * w + x) * c + k] = src[(sy * w + sx) * c + k];
    }
  }
}

/**
 * Batch `step` of a step-indexed trainer (the restoration and denoiser trainers): the images of that step in the
 * data order of its epoch, permutation(count, seed * 7919 + epoch) with epochs of floor(count / B) steps, each
 * augmented into `xb` (B = xb.length / image size) and its label put in `yb` if given, with draws from the step's
 * own stream mulberry32(seed * 100003 + step), which is returned for the step's further draws. A resumed run
 * repeats its batches exactly.
 */
export function stepBatch(train: Dataset, step: number, seed: number, xb: Float32Array, aug: { maxShift: number; flip: boolean }, yb?: Int32Array): Rng {
  const size = imageSize(train);
  const [h, w, c] = train.shape;
  const B = xb.length / size;
  const perEpoch = Math.max(1, Math.floor(train.count / B));
  const order = permutation(train.count, seed * 7919 + Math.floor(step / perEpoch));
  const rng = mulberry32(seed * 100003 + step);
  const s = step % perEpoch;
  for (let i = 0; i < B; i++) {
    const j = order[(s * B + i) % train.count];
    augmentInto(xb.subarray(i * size, (i + 1) * size), train.images.subarray(j * size, (j + 1) * size), h, w, c, rng, aug.maxShift, aug.flip);
    if (yb) yb[i] = train.labels[j];
  }
  return rng;
}
