import type { DatasetName } from '../data/index.js';

/** Whether a horizontal flip keeps an image's class: not for digits (a mirrored digit is not the same digit). */
export function mirrorKeepsClass(dataset: DatasetName): boolean {
  return dataset !== 'mnist';
}

/** Cheap label-preserving augmentation on raw [H,W,1] images: random shift (zero fill) and horizontal flip. */
import type { Rng } from '../util/rng.js';

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
