/**
 * Square patch boxes and binary masks. A mask is [N,H,W,1] float32 with 1 where a pixel is (suspected)
 * patch, 0 elsewhere; it broadcasts against images of any channel count.
 */
import { tf, type Tensor4D } from '../../backend/index.js';

/** An s x s square with its top-left corner at (top, left), in pixels. */
export interface Box {
  top: number;
  left: number;
  size: number;
}

/** An axis-aligned rectangle in pixels: columns [left, left + width), rows [top, top + height). */
export interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** The bounding rectangle of the pixels > 0.5 of one h x w mask (row-major), or null when there are none. */
export function maskBounds(mask: ArrayLike<number>, h: number, w: number): Rect | null {
  let [top, left, bottom, right] = [h, w, -1, -1];
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      if (!(mask[r * w + c] > 0.5)) continue;
      [top, left, bottom, right] = [Math.min(top, r), Math.min(left, c), Math.max(bottom, r), Math.max(right, c)];
    }
  }
  return bottom < 0 ? null : { left, top, width: right - left + 1, height: bottom - top + 1 };
}

/** 0/1 masks [N,H,W,1] of one box per image. */
export function boxMask(boxes: readonly Box[], h: number, w: number): Tensor4D {
  const m = new Float32Array(boxes.length * h * w);
  boxes.forEach((b, i) => {
    for (let r = Math.max(0, b.top); r < Math.min(h, b.top + b.size); r++) {
      for (let c = Math.max(0, b.left); c < Math.min(w, b.left + b.size); c++) m[(i * h + r) * w + c] = 1;
    }
  });
  return tf.tensor4d(m, [boxes.length, h, w, 1]);
}

/** Intersection over union of a 0/1 mask (one image, H*W values) and a box; 1 when both are empty. */
export function maskIoU(mask: ArrayLike<number>, box: Box, h: number, w: number): number {
  let inter = 0;
  let union = 0;
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const m = mask[r * w + c] > 0.5;
      const b = r >= box.top && r < box.top + box.size && c >= box.left && c < box.left + box.size;
      if (m && b) inter++;
      if (m || b) union++;
    }
  }
  return union === 0 ? 1 : inter / union;
}

/** Per-image IoU of masks [N,H,W,1] against boxes. */
export function maskIoUs(mask: Tensor4D, boxes: readonly Box[]): number[] {
  const [n, h, w] = mask.shape;
  const data = mask.dataSync();
  return Array.from({ length: n }, (_, i) => maskIoU(data.subarray(i * h * w, (i + 1) * h * w), boxes[i], h, w));
}

/** A box of side `size` placed uniformly at random inside an h x w image. */
export function randomBox(size: number, h: number, w: number, rng: () => number): Box {
  return { top: Math.floor(rng() * (h - size + 1)), left: Math.floor(rng() * (w - size + 1)), size };
}

/** Intersection over union of two boxes (0 when either is empty). */
export function boxIoU(a: Box, b: Box): number {
  const ih = Math.max(0, Math.min(a.top + a.size, b.top + b.size) - Math.max(a.top, b.top));
  const iw = Math.max(0, Math.min(a.left + a.size, b.left + b.size) - Math.max(a.left, b.left));
  const inter = ih * iw;
  const union = a.size * a.size + b.size * b.size - inter;
  return union > 0 ? inter / union : 0;
}
