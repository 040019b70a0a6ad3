/**
 * Digital degradations: pixelation (area-average down to a smaller grid, nearest-neighbour back up)
 * and low bit depth (uniform quantisation to 2^bits levels: banding).
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { at, defineSync } from './common.js';

/**
 * Resampling matrix [n, n]: area-average n pixels onto m cells, then nearest-neighbour back to n.
 * Row i holds the weights of the cell that pixel i falls in.
 */
export function pixelateMatrix(n: number, m: number): Float32Array {
  const mat = new Float32Array(n * n);
  const cell = n / m; // input pixels per cell
  for (let i = 0; i < n; i++) {
    const k = Math.min(m - 1, Math.floor(((i + 0.5) * m) / n)); // the cell of output pixel i
    const lo = k * cell;
    const hi = (k + 1) * cell;
    for (let j = 0; j < n; j++) {
      const overlap = Math.max(0, Math.min(hi, j + 1) - Math.max(lo, j));
      mat[i * n + j] = overlap / cell;
    }
  }
  return mat;
}

/** y[n,i,j,c] = sum_{h,w} A[i,h] B[j,w] x[n,h,w,c] with A [H,H] and B [W,W]. */
function separable(x: Tensor4D, a: Float32Array, b: Float32Array): Tensor4D {
  const [n, h, w, c] = x.shape;
  const rows = tf.matMul(tf.tensor2d(a, [h, h]), x.transpose([1, 0, 2, 3]).reshape([h, n * w * c])); // [H, N*W*C]
  const cols = rows.reshape([h, n, w, c]).transpose([2, 1, 0, 3]).reshape([w, n * h * c]); // [W, N*H*C]
  return tf.matMul(tf.tensor2d(b, [w, w]), cols).reshape([w, n, h, c]).transpose([1, 2, 0, 3]) as Tensor4D;
}

/** Side of the coarse grid as a fraction of the image side (ImageNet-C's pixelate factors). */
const PIXELATE_FACTOR = [0.6, 0.5, 0.4, 0.3, 0.25] as const;

export const pixelate = defineSync(
  {
    name: 'pixelate',
    description: 'area-average down to factor * side, nearest-neighbour up (exact linear map)',
    table: { factor: PIXELATE_FACTOR },
    random: false,
    differentiable: true,
  },
  (x, severity) => {
    const [, h, w] = x.shape;
    const factor = at(PIXELATE_FACTOR, severity);
    const gridH = Math.max(1, Math.round(h * factor));
    const gridW = Math.max(1, Math.round(w * factor));
    return { y: separable(x, pixelateMatrix(h, gridH), pixelateMatrix(w, gridW)), params: { factor, grid: [gridH, gridW] } };
  },
);

/** Bits per channel kept: 2^bits grey levels. */
const BIT_DEPTH = [5, 4, 3, 2, 1] as const;

export const bitDepth = defineSync(
  {
    name: 'bit-depth',
    description: 'uniform quantisation to 2^bits levels per channel (banding); gradient is zero almost everywhere',
    table: { bits: BIT_DEPTH },
    random: false,
    differentiable: false,
  },
  (x, severity) => {
    const bits = at(BIT_DEPTH, severity);
    const top = 2 ** bits - 1;
    return { y: tf.round(x.mul(top)).div(top), params: { bits } };
  },
);
