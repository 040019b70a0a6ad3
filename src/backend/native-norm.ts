/**
 * Group norm followed by SiLU (the U-Net's every normalisation) as two of our wasm SIMD kernels
 * (src/backend/native/kernels.c): the forward pass in two sweeps over x (channel sums, then normalise + SiLU) instead
 * of ~12 tfjs ops, and its gradient in two sweeps instead of ~15. Registered as kernels of the wasm backend so that
 * tfjs's engine tracks their tensors; `groupNormSilu` picks them when they apply, with a custom gradient under a tape.
 */
import { tf } from './tf.js';
import type { Backend, KernelArgs, TensorInfo } from './kernel-types.js';
import { nativeHeap, nativeKernelOn, nativeKernels } from './native.js';

const FORWARD = 'AdvpurifyGroupNormSilu';
const GRADIENT = 'AdvpurifyGroupNormSiluGrad';

function heapOf(backend: Backend) {
  const h = nativeHeap(backend);
  if (!h) throw new Error('advpurify: group norm kernel called without the native kernels');
  return h;
}

/** inputs x [N,H,W,C], g, b [C]; attrs groups, eps, silu -> [y, stats [N, groups, 3]: mean, rstd, variance] */
function forwardKernel({ inputs, attrs, backend }: KernelArgs): TensorInfo[] {
  const { x, g, b } = inputs;
  const { groups, eps, silu } = attrs as { groups: number; eps: number; silu: boolean };
  const [n, h, w, c] = x.shape;
  const { heap, off, native } = heapOf(backend);
  const y = heap.makeOutput(x.shape, 'float32');
  const stats = heap.makeOutput([n, groups, 3], 'float32');
  const scratch = heap.makeOutput([4 * c], 'float32'); // every allocation before the offsets are read (heap growth)
  native.groupNorm(off(x), off(g), off(b), off(y), off(stats), off(scratch), n, h * w, c, groups, eps, silu ? 1 : 0);
  backend.disposeData(scratch.dataId);
  return [y, stats];
}

/** inputs x, g, b, stats (the forward's), dy; attrs groups, silu -> [dx, dg, db] */
function gradientKernel({ inputs, attrs, backend }: KernelArgs): TensorInfo[] {
  const { x, g, b, stats, dy } = inputs;
  const { groups, silu } = attrs as { groups: number; silu: boolean };
  const [n, h, w, c] = x.shape;
  const { heap, off, native } = heapOf(backend);
  const dx = heap.makeOutput(x.shape, 'float32');
  const dg = heap.makeOutput(g.shape, 'float32');
  const db = heap.makeOutput(b.shape, 'float32');
  const scratch = heap.makeOutput([4 * c], 'float32');
  native.groupNormGrad(off(x), off(g), off(b), off(stats), off(dy), off(dx), off(dg), off(db), off(scratch), n, h * w, c, groups, silu ? 1 : 0);
  backend.disposeData(scratch.dataId);
  return [dx, dg, db];
}

let registered = false;

/** Register the two kernels on the wasm backend. Idempotent. */
export function registerNativeGroupNorm(): void {
  if (registered) return;
  for (const [kernelName, fn] of [[FORWARD, forwardKernel], [GRADIENT, gradientKernel]] as const) {
    if (!tf.getKernel(kernelName, 'wasm')) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: fn as unknown as tf.KernelFunc });
  }
  registered = true;
}

/**
 * Whether groupNormSilu can run x in the native kernels: the wasm backend with our kernels loaded, float32 NHWC,
 * channels a multiple of 4 and of `groups`, per-channel g and b.
 */
export function nativeGroupNormSiluApplies(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, groups: number): boolean {
  if (!registered || !nativeKernelOn('groupNorm') || tf.getBackend() !== 'wasm') return false;
  if (x.rank !== 4 || x.dtype !== 'float32' || g.dtype !== 'float32' || b.dtype !== 'float32') return false;
  const c = x.shape[3] as number;
  if (c % 4 !== 0 || !Number.isInteger(groups) || groups < 1 || c % groups !== 0 || g.size !== c || b.size !== c) return false;
  return nativeKernels(tf.backend() as unknown as Backend) !== null;
}

const withGrad = new Map<string, (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor>();

/** silu(group norm(x) g + b) in the native kernels (check nativeGroupNormSiluApplies first); differentiable in x, g, b. */
export function nativeGroupNormSilu(x: tf.Tensor4D, g: tf.Tensor, b: tf.Tensor, groups: number, eps: number, silu = true): tf.Tensor4D {
  const attrs = { groups, eps, silu };
  if (!tf.engine().isTapeOn()) {
    const [y, stats] = tf.engine().runKernel(FORWARD, { x, g, b }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    stats.dispose();
    return y as tf.Tensor4D;
  }
  const key = `${groups}/${eps}/${silu}`;
  let op = withGrad.get(key);
  if (!op) {
    op = tf.customGrad((...args: unknown[]) => {
      const [xi, gi, bi, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
      const [y, stats] = tf.engine().runKernel(FORWARD, { x: xi, g: gi, b: bi }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      save([xi, gi, bi, stats]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xs, gs, bs, st] = saved;
          return tf.engine().runKernel(GRADIENT, { x: xs, g: gs, b: bs, stats: st, dy }, { groups, silu } as unknown as tf.NamedAttrMap) as tf.Tensor[];
        },
      };
    }) as unknown as (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor;
    withGrad.set(key, op);
  }
  return op(x, g, b) as tf.Tensor4D;
}
