/** In-memory labelled image sets: images [N, H, W, C] as float32 in [0, 1], labels 0..classes-1. */
import { tf, type Tensor4D, type Tensor1D } from '../backend/index.js';

export interface Dataset {
  name: string;
  images: Float32Array; // N*H*W*C, values in [0, 1]
  labels: Int32Array; // N
  count: number;
  shape: [number, number, number]; // [H, W, C]
  classNames: string[];
}

export function imageSize(ds: Dataset): number {
  return ds.shape[0] * ds.shape[1] * ds.shape[2];
}

/** Rows `indices` of a dataset as a new Dataset (copies). */
export function subset(ds: Dataset, indices: ArrayLike<number>, name = ds.name): Dataset {
  const size = imageSize(ds);
  const images = new Float32Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i];
    images.set(ds.images.subarray(j * size, (j + 1) * size), i * size);
    labels[i] = ds.labels[j];
  }
  return { ...ds, name, images, labels, count: indices.length };
}

/** First `n` examples (no copy of the underlying buffer beyond slicing). */
export function take(ds: Dataset, n: number): Dataset {
  const k = Math.min(n, ds.count);
  const size = imageSize(ds);
  return { ...ds, images: ds.images.slice(0, k * size), labels: ds.labels.slice(0, k), count: k };
}

/** A batch as tensors: x [B, H, W, C] in [0, 1] and integer labels [B]. */
export function batch(ds: Dataset, indices: ArrayLike<number>): { x: Tensor4D; y: Tensor1D } {
  const size = imageSize(ds);
  const buf = new Float32Array(indices.length * size);
  const lab = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i];
    buf.set(ds.images.subarray(j * size, (j + 1) * size), i * size);
    lab[i] = ds.labels[j];
  }
  return {
    x: tf.tensor4d(buf, [indices.length, ...ds.shape]),
    y: tf.tensor1d(lab, 'int32'),
  };
}

/** Contiguous range [start, end) as tensors. */
export function range(ds: Dataset, start: number, end: number): { x: Tensor4D; y: Tensor1D } {
  const idx = Array.from({ length: Math.max(0, Math.min(end, ds.count) - start) }, (_, i) => start + i);
  return batch(ds, idx);
}
