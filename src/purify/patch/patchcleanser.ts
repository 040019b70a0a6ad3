/**
 * PatchCleanser (Xiang, Mahloujifar & Mittal, USENIX Security 2022): a certifiably robust defence against
 * one adversarial patch of at most p x p pixels anywhere in the image, for any classifier, by double
 * masking. The certified baseline next to the diffusion defences in `bench patch`.
 *
 * Mask set: k masks per axis of side m = p + s - 1 at stride s = ceil((n - p + 1) / k) (the last one moved
 * to the border), their k x k products in 2-D. Every p x p window of the image lies inside at least one
 * mask (the set is "p-covering"), so some mask removes the whole patch.
 *
 * Certification (Theorem 1 of the paper): if the classifier gives the true label for the image with every
 * pair of masks applied (one-mask predictions included: a mask paired with itself), then double-masking
 * inference returns the true label for every patch placement of size <= p: no attack can change it.
 * The check needs the clean image only; it is exact (no sampling, no probability of failure).
 */
import { tf, type Tensor4D } from '../../backend/index.js';
import type { LogitsFn } from '../../types.js';
import type { Rect } from './box.js';

export interface MaskSetOptions {
  /** Largest patch side the set must cover, pixels. */
  patch: number;
  /** Masks per axis (k; default 6, the paper's choice): more masks = smaller masks, more predictions (k^4 / 2 pairs). */
  perAxis?: number;
}

/** Per-axis mask starts and the mask side for an axis of n pixels. */
export function axisMasks(n: number, patch: number, k: number): { starts: number[]; side: number } {
  if (!Number.isInteger(patch) || patch < 1 || patch > n) throw new RangeError(`patch side must be an integer in 1..${n}, got ${patch}`);
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`masks per axis must be a positive integer, got ${k}`);
  const stride = Math.ceil((n - patch + 1) / k);
  const side = Math.min(n, patch + stride - 1);
  const starts = [...new Set(Array.from({ length: k }, (_, i) => Math.min(i * stride, n - side)))];
  return { starts, side };
}

/** The 2-D mask set for h x w images: rectangles (pixels set to the fill value when applied). */
export function maskSet(h: number, w: number, o: MaskSetOptions): Rect[] {
  const k = o.perAxis ?? 6;
  const rows = axisMasks(h, o.patch, k);
  const cols = axisMasks(w, o.patch, k);
  return rows.starts.flatMap((top) => cols.starts.map((left) => ({ top, left, height: rows.side, width: cols.side })));
}

/** [h, w] keep-map (1 = kept, 0 = masked) of the union of `rects`. */
function keepMap(h: number, w: number, rects: readonly Rect[]): Float32Array {
  const keep = new Float32Array(h * w).fill(1);
  for (const r of rects) for (let y = r.top; y < r.top + r.height; y++) keep.fill(0, y * w + r.left, y * w + r.left + r.width);
  return keep;
}

export interface PatchCleanserOptions extends MaskSetOptions {
  /** Value written into masked pixels (default 0: the black background of (Fashion-)MNIST). */
  fill?: number;
  /** Masked images per classifier call (default 512). */
  batchSize?: number;
}

export interface PatchCleanserResult {
  /** Double-masking inference's label per image (Algorithm 1). */
  prediction: number[];
  /** Whether each image's label is certified against any patch of side <= patch (needs `labels`). */
  certified: boolean[];
  /** Number of masks and of classifier evaluations per image. */
  masks: number;
  evaluations: number;
}

/**
 * Double-masking inference and certification for images x [N,H,W,C] in [0,1] with labels `labels`
 * (certification compares the two-mask predictions with them). Classifies every image under every pair of
 * masks (|M| (|M| + 1) / 2 masked copies), so the cost is that many classifier calls per image.
 */
export function patchCleanser(classifier: LogitsFn, x: Tensor4D, labels: ArrayLike<number>, o: PatchCleanserOptions): PatchCleanserResult {
  const [n, h, w, c] = x.shape;
  if (labels.length !== n) throw new RangeError(`need one label per image: ${labels.length} labels for ${n} images`);
  const masks = maskSet(h, w, o);
  const M = masks.length;
  const fill = o.fill ?? 0;
  const pairs: [number, number][] = [];
  for (let i = 0; i < M; i++) for (let j = i; j < M; j++) pairs.push([i, j]);
  const keeps = pairs.map(([i, j]) => keepMap(h, w, i === j ? [masks[i]] : [masks[i], masks[j]]));
  const batch = Math.max(1, Math.floor(o.batchSize ?? 512));
  const pixels = x.dataSync();
  const size = h * w * c;
  const prediction: number[] = [];
  const certified: boolean[] = [];
  for (let img = 0; img < n; img++) {
    // two[i][j] (i <= j): the label with masks i and j applied
    const two: Int32Array[] = Array.from({ length: M }, () => new Int32Array(M));
    for (let s = 0; s < pairs.length; s += batch) {
      const part = pairs.slice(s, s + batch);
      const buf = new Float32Array(part.length * size);
      part.forEach((_, q) => {
        const keep = keeps[s + q];
        const base = img * size;
        for (let p = 0; p < h * w; p++) {
          for (let ch = 0; ch < c; ch++) buf[q * size + p * c + ch] = keep[p] ? pixels[base + p * c + ch] : fill;
        }
      });
      const pred = tf.tidy(() => classifier(tf.tensor4d(buf, [part.length, h, w, c])).argMax(-1).dataSync());
      part.forEach(([i, j], q) => {
        two[i][j] = pred[q];
        two[j][i] = pred[q];
      });
    }
    certified.push(pairs.every(([i, j]) => two[i][j] === labels[img]));
    prediction.push(doubleMasking(two));
  }
  return { prediction, certified, masks: M, evaluations: pairs.length };
}

/** Algorithm 1 of the paper on the table of two-mask labels (one-mask labels on the diagonal). */
export function doubleMasking(two: ArrayLike<number>[]): number {
  const M = two.length;
  const one = Array.from({ length: M }, (_, i) => two[i][i]);
  const counts = new Map<number, number>();
  for (const y of one) counts.set(y, (counts.get(y) ?? 0) + 1);
  // majority label (ties: the smallest label, a fixed rule)
  const majority = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
  if (counts.size === 1) return majority; // case I: agreement
  for (let i = 0; i < M; i++) {
    if (one[i] === majority) continue;
    // case II: a disagreer whose second-round predictions all agree with it
    let agree = true;
    for (let j = 0; j < M && agree; j++) agree = two[i][j] === one[i];
    if (agree) return one[i];
  }
  return majority; // case III
}
