/**
 * Training kernels for the wasm backend.
 *
 * tfjs-backend-wasm 4.22.0 ships no `Conv2DBackpropFilter` (any conv training fails) and a
 * `Conv2DBackpropInput` about 10x slower than a `Conv2D` of the same size. The filter gradient and the forward
 * conv run in our own SIMD kernels (native.ts) where they apply; otherwise, and for the input gradient, both
 * gradients are convolutions themselves, so we express them as wasm `Conv2D` calls on transposed / padded /
 * flipped operands:
 *
 *   dW = conv2d(transpose(pad(x)) as [Cin,Hp,Wp,B], transpose(dy) as [Ho,Wo,B,Cout],
 *               stride 1, dilation = forward stride), sliced to [kh,kw] and transposed back;
 *        for large batches summed over batch chunks that fit in L2 (see filterGradChunk).
 *   dx = conv2d(pad(dilate(dy, stride)), flip(W) with in/out channels swapped, stride 1);
 *        for strides > 1 by phases instead (no dilated dy: one conv with s*s*Cin outputs, then
 *        interleaved; 2.1x / 1.9x faster on the U-Net's two stride-2 layers, 2026-11-29).
 *
 * Inside a kernel we call other kernels' kernelFuncs on the same backend and free every
 * intermediate with `backend.disposeData` (wrapping TensorInfos in Tensors would corrupt the
 * engine's bookkeeping).
 */
import { tf } from './tf.js';
import type { Backend, ConvAttrs, HeapBackend, KernelArgs, KernelFn, TensorInfo } from './kernel-types.js';
import { fastConv, fastFusedConv, nativeFilterGrad } from './native.js';
import { registerNativeGroupNorm } from './native-norm.js';

function kernel(name: string): KernelFn {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm kernel ${name} is not registered`);
  return k.kernelFunc as unknown as KernelFn;
}

function checkNHWC(attrs: ConvAttrs): void {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') {
    throw new Error(`advpurify wasm conv gradients support NHWC only, got ${attrs.dataFormat}`);
  }
}

/** Scope that frees every intermediate TensorInfo it made, except the one returned. */
function scoped(backend: Backend, body: (keep: (t: TensorInfo) => TensorInfo) => TensorInfo): TensorInfo {
  const made: TensorInfo[] = [];
  const keep = (t: TensorInfo): TensorInfo => {
    made.push(t);
    return t;
  };
  const out = body(keep);
  for (const t of made) if (t !== out) backend.disposeData(t.dataId);
  return out;
}

/**
 * Batch chunk size for the filter gradient: the conv below reduces over K = B Ho Wo with only Cin 9 x Cout
 * outputs, and XNNPACK streams its whole packed "filter" (dy, K x Cout) once per 4-row tile of outputs:
 * beyond the L2 cache that runs at L3 bandwidth (2.5-4.5x the forward conv's time). Chunks of the batch
 * whose dy part fits in L2 (about `filterGradChunkFloats` floats), summed: 2026-11-29, interleaved A/B with
 * the jobs paused, [64,28,28,32] -> 32 ran 1.52x / 1.14x faster (two runs), the other U-Net shapes
 * within noise; a whole U-Net training step 1.12 / 1.41 / 0.89 / 1.02x (four runs, geometric mean 1.09x).
 */
let filterGradChunkFloats = 262144;

/** For tests: force small chunks (returns the previous size). */
export function setFilterGradChunkFloats(n: number): number {
  const prev = filterGradChunkFloats;
  filterGradChunkFloats = n;
  return prev;
}

/** Images per chunk (a divisor of b, at least 4 and at least half the target), or b for one conv over the whole batch. */
function filterGradChunk(b: number, floatsPerImage: number): number {
  const target = Math.floor(filterGradChunkFloats / Math.max(1, floatsPerImage));
  if (target >= b || target < 4) return b;
  for (let c = target; c >= Math.max(4, Math.ceil(target / 2)); c--) if (b % c === 0) return c;
  return b;
}

export function conv2DBackpropFilterWasm({ inputs, attrs, backend }: KernelArgs): TensorInfo {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
  checkNHWC(a);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], a.filterShape, a.strides, 1, a.pad, a.dimRoundingMode);
  const native = nativeFilterGrad(x, dy, a.filterShape, info, backend);
  if (native) return native;
  const { top, bottom, left, right } = info.padInfo;
  const [kh, kw, cin, cout] = a.filterShape;
  const [b, h, w] = x.shape;
  const [, ho, wo] = dy.shape;
  const transpose = kernel('Transpose');
  const reshape = kernel('Reshape');
  const conv = kernel('Conv2D');
  const slice = kernel('Slice');
  const addN = kernel('AddN');
  // the zero padding is the conv's own (explicit) padding: no padded copy of x
  const convAttrs = { strides: 1, pad: [[0, 0], [top, bottom], [left, right], [0, 0]], dataFormat: 'NHWC', dilations: [info.strideHeight, info.strideWidth] };
  const c = filterGradChunk(b, ho * wo * cout);
  return scoped(backend, (keep) => {
    let full: TensorInfo;
    if (c === b) {
      const xT = keep(transpose({ inputs: { x }, attrs: { perm: [3, 1, 2, 0] }, backend })); // [Cin, H, W, B]
      const dyT = keep(transpose({ inputs: { x: dy }, attrs: { perm: [1, 2, 0, 3] }, backend })); // [Ho, Wo, B, Cout]
      full = keep(conv({ inputs: { x: xT, filter: dyT }, attrs: convAttrs, backend }));
    } else {
      // chunk k of the batch: x as [Cin, H, W, c], dy as [Ho, Wo, c, Cout], each a contiguous block of one transpose
      const nc = b / c;
      const x5 = keep(reshape({ inputs: { x }, attrs: { shape: [nc, c, h, w, cin] }, backend }));
      const xT = keep(transpose({ inputs: { x: x5 }, attrs: { perm: [0, 4, 2, 3, 1] }, backend }));
      const d5 = keep(reshape({ inputs: { x: dy }, attrs: { shape: [nc, c, ho, wo, cout] }, backend }));
      const dT = keep(transpose({ inputs: { x: d5 }, attrs: { perm: [0, 2, 3, 1, 4] }, backend }));
      const heap = backend as HeapBackend;
      const block = (t: TensorInfo, k: number, shape: number[]): TensorInfo => { // chunk k: a contiguous copy
        const n = shape.reduce((p, q) => p * q, 1);
        const out = keep(heap.makeOutput(shape, 'float32'));
        heap.typedArrayFromHeap(out).set(heap.typedArrayFromHeap(t).subarray(k * n, (k + 1) * n));
        return out;
      };
      const parts: TensorInfo[] = [];
      for (let k = 0; k < nc; k++) {
        const xk = block(xT, k, [cin, h, w, c]);
        const dk = block(dT, k, [ho, wo, c, cout]);
        parts.push(keep(conv({ inputs: { x: xk, filter: dk }, attrs: convAttrs, backend })));
      }
      full = keep(addN({ inputs: parts as unknown as Record<string, TensorInfo>, backend }));
    }
    let cut = full;
    if (full.shape[1] !== kh || full.shape[2] !== kw) {
      cut = keep(slice({ inputs: { x: full }, attrs: { begin: [0, 0, 0, 0], size: [cin, kh, kw, cout] }, backend }));
    }
    return keep(transpose({ inputs: { x: cut }, attrs: { perm: [1, 2, 0, 3] }, backend }));
  });
}

export function conv2DBackpropInputWasm({ inputs, attrs, backend }: KernelArgs): TensorInfo {
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
  checkNHWC(a);
  const [kh, kw] = filter.shape as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(
    a.inputShape, filter.shape as [number, number, number, number], a.strides, 1, a.pad, a.dimRoundingMode);
  const { strideHeight: sh, strideWidth: sw } = info;
  const [b, ho, wo, cout] = dy.shape as [number, number, number, number];
  const [, hIn, wIn] = a.inputShape;
  const pad = kernel('PadV2');
  const reshape = kernel('Reshape');
  const reverse = kernel('Reverse');
  const transpose = kernel('Transpose');
  const conv = kernel('Conv2D');
  const slice = kernel('Slice');
  if (sh === sw && sh > 1) {
    const poly = polyphaseBackpropInput(dy, filter, a.inputShape, sh, info.padInfo.top, info.padInfo.left, backend as HeapBackend);
    if (poly) return poly;
  }
  return scoped(backend, (keep) => {
    // 1. Dilate dy with stride-1 zeros between its samples: [B, (Ho-1)*sh+1, (Wo-1)*sw+1, Cout].
    let dyd = dy;
    let hd = ho;
    let wd = wo;
    if (sh > 1 || sw > 1) {
      const r6 = keep(reshape({ inputs: { x: dy }, attrs: { shape: [b, ho, 1, wo, 1, cout] }, backend }));
      const p6 = keep(pad({
        inputs: { x: r6 },
        attrs: { paddings: [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]], constantValue: 0 },
        backend,
      }));
      const r4 = keep(reshape({ inputs: { x: p6 }, attrs: { shape: [b, ho * sh, wo * sw, cout] }, backend }));
      hd = (ho - 1) * sh + 1;
      wd = (wo - 1) * sw + 1;
      dyd = keep(slice({ inputs: { x: r4 }, attrs: { begin: [0, 0, 0, 0], size: [b, hd, wd, cout] }, backend }));
    }
    // 2. Pad so that a stride-1 valid conv with a kh x kw filter yields exactly [hIn, wIn].
    const pt = kh - 1 - info.padInfo.top;
    const pl = kw - 1 - info.padInfo.left;
    const pb = hIn + kh - 1 - pt - hd;
    const pr = wIn + kw - 1 - pl - wd;
    const padAmt = [[0, 0], [Math.max(pt, 0), Math.max(pb, 0)], [Math.max(pl, 0), Math.max(pr, 0)], [0, 0]];
    let dyp = dyd;
    // non-negative padding is the conv's own (explicit) padding: no padded copy of dy
    const convPad = pt >= 0 && pl >= 0 && pb >= 0 && pr >= 0 ? padAmt : 'valid';
    if (convPad === 'valid' && padAmt.some(([p, q]) => p > 0 || q > 0)) {
      dyp = keep(pad({ inputs: { x: dyd }, attrs: { paddings: padAmt, constantValue: 0 }, backend }));
    }
    if (pt < 0 || pl < 0 || pb < 0 || pr < 0) {
      const t0 = Math.max(-pt, 0);
      const l0 = Math.max(-pl, 0);
      const hNeed = hIn + kh - 1;
      const wNeed = wIn + kw - 1;
      dyp = keep(slice({ inputs: { x: dyp }, attrs: { begin: [0, t0, l0, 0], size: [b, hNeed, wNeed, cout] }, backend }));
    }
    // 3. Flip the filter spatially and swap its channel axes: [kh, kw, Cout, Cin].
    const flipped = keep(reverse({ inputs: { x: filter }, attrs: { dims: [0, 1] }, backend }));
    const wT = keep(transpose({ inputs: { x: flipped }, attrs: { perm: [0, 1, 3, 2] }, backend }));
    return keep(conv({
      inputs: { x: dyp, filter: wT },
      attrs: { strides: 1, pad: convPad, dataFormat: 'NHWC', dilations: 1 },
      backend,
    }));
  });
}

/** Per axis of a strided conv's input gradient: which filter tap feeds which output phase from which dy offset. */
function phaseTaps(k: number, s: number, padBefore: number) {
  // input row i = s m + r receives dy[m + d] W[k'] for every tap k' = r + padBefore - s d in [0, k)
  const taps: { r: number; d: number; k: number }[] = [];
  for (let r = 0; r < s; r++) {
    for (let kk = 0; kk < k; kk++) {
      const num = r + padBefore - kk;
      if (num % s === 0) taps.push({ r, d: num / s, k: kk });
    }
  }
  const ds = taps.map((t) => t.d);
  return { taps, dmin: Math.min(...ds), dmax: Math.max(...ds) };
}

/**
 * The input gradient of a stride-s conv by phases (sub-pixel convolution): input pixels of one phase
 * (row mod s, column mod s) see only some of the filter's taps, so one stride-1 conv of the undilated dy
 * with a ceil(k/s) x ceil(k/s) filter that has s*s*Cin output channels (one group per phase) computes them
 * all, and a transpose interleaves the phases (DepthToSpace). Against the dilated dy (3/4 zeros at stride 2) that is
 * (ceil(k/s) s)^2 / k^2 of the multiply-adds (16/9 / 4 = 0.44 for 3x3, stride 2) and no dilated copy.
 * Returns null where the layout does not fit (a phase needing dy beyond its start).
 */
function polyphaseBackpropInput(dy: TensorInfo, filter: TensorInfo, inputShape: number[], s: number, padTop: number, padLeft: number, backend: HeapBackend): TensorInfo | null {
  const [b, ho, wo, cout] = dy.shape;
  const [kh, kw, cin] = filter.shape;
  const [, hIn, wIn] = inputShape;
  const ph = phaseTaps(kh, s, padTop);
  const pw = phaseTaps(kw, s, padLeft);
  if (ph.dmin > 0 || pw.dmin > 0 || ph.taps.length === 0 || pw.taps.length === 0) return null;
  const KH = ph.dmax - ph.dmin + 1;
  const KW = pw.dmax - pw.dmin + 1;
  const hq = Math.ceil(hIn / s);
  const wq = Math.ceil(wIn / s);
  // padding so that the stride-1 conv yields (at least) hq x wq phase pixels
  const pt = -ph.dmin;
  const pl = -pw.dmin;
  const pb = Math.max(0, hq + KH - 1 - pt - ho);
  const pr = Math.max(0, wq + KW - 1 - pl - wo);
  // phase filter F[a, c, co, (r s + q) Cin + ci] = W[kh(r, a), kw(q, c), ci, co], zero where no tap
  const f = backend.makeOutput([KH, KW, cout, s * s * cin], 'float32');
  const F = backend.typedArrayFromHeap(f);
  F.fill(0);
  const W = backend.typedArrayFromHeap(filter);
  const oc = s * s * cin;
  for (const th of ph.taps) {
    for (const tw of pw.taps) {
      const a = th.d - ph.dmin;
      const c = tw.d - pw.dmin;
      for (let ci = 0; ci < cin; ci++) {
        const src = ((th.k * kw + tw.k) * cin + ci) * cout;
        const group = (th.r * s + tw.r) * cin + ci;
        for (let co = 0; co < cout; co++) F[((a * KW + c) * cout + co) * oc + group] = W[src + co];
      }
    }
  }
  const conv = kernel('Conv2D');
  const reshape = kernel('Reshape');
  const transpose = kernel('Transpose');
  const slice = kernel('Slice');
  return scoped(backend, (keep) => {
    keep(f);
    const phases = keep(conv({
      inputs: { x: dy, filter: f },
      attrs: { strides: 1, pad: [[0, 0], [pt, pb], [pl, pr], [0, 0]], dataFormat: 'NHWC', dilations: 1 },
      backend,
    }));
    let out = phases;
    if (phases.shape[1] !== hq || phases.shape[2] !== wq) {
      out = keep(slice({ inputs: { x: out }, attrs: { begin: [0, 0, 0, 0], size: [b, hq, wq, oc] }, backend }));
    }
    // interleave the phases (DepthToSpace; wasm's own kernel is a scalar loop ~15x slower than this transpose)
    const r6 = keep(reshape({ inputs: { x: out }, attrs: { shape: [b, hq, wq, s, s, cin] }, backend }));
    const t6 = keep(transpose({ inputs: { x: r6 }, attrs: { perm: [0, 1, 3, 2, 4, 5] }, backend }));
    out = keep(reshape({ inputs: { x: t6 }, attrs: { shape: [b, hq * s, wq * s, cin] }, backend }));
    if (hq * s !== hIn || wq * s !== wIn) {
      out = keep(slice({ inputs: { x: out }, attrs: { begin: [0, 0, 0, 0], size: [b, hIn, wIn, cin] }, backend }));
    }
    return out;
  });
}

/**
 * wasm's BatchMatMul with transposeA/transposeB is ~8x slower than an explicit Transpose followed by
 * a plain BatchMatMul (dense-layer gradients use both). Wrap the stock kernel to transpose first.
 */
function transposeFirst(original: KernelFn): KernelFn {
  return ({ inputs, attrs = {}, backend }) => {
    const { transposeA, transposeB } = attrs as { transposeA?: boolean; transposeB?: boolean };
    if (!transposeA && !transposeB) return original({ inputs, attrs, backend });
    const transpose = kernel('Transpose');
    const swapLast = (t: TensorInfo): number[] => {
      const perm = t.shape.map((_, i) => i);
      const r = perm.length;
      [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
      return perm;
    };
    return scoped(backend, (keep) => {
      const a = transposeA ? keep(transpose({ inputs: { x: inputs.a }, attrs: { perm: swapLast(inputs.a) }, backend })) : inputs.a;
      const b = transposeB ? keep(transpose({ inputs: { x: inputs.b }, attrs: { perm: swapLast(inputs.b) }, backend })) : inputs.b;
      return keep(original({ inputs: { ...inputs, a, b }, attrs: { ...attrs, transposeA: false, transposeB: false }, backend }));
    });
  };
}

/**
 * wasm's Sum/Mean over leading axes (e.g. [0,1,2] of NHWC, as in batch-norm and bias gradients)
 * transposes and reduces ~10x slower than a matmul with a row of ones. Reductions over a contiguous
 * block of axes [a, b) (not the last) become AvgPool over a [P,1] window of x viewed as [B,P,1,Q]
 * (BatchMatMul(ones[B,1,P], x[B,P,Q]) beyond P = 65536); everything else keeps the stock path.
 */
function reduceByMatMul(original: KernelFn, mean: boolean): KernelFn {
  return ({ inputs, attrs = {}, backend }) => {
    const x = inputs.x;
    const rank = x.shape.length;
    const raw = (attrs as { axis: number | number[] }).axis;
    const axes = [...new Set((Array.isArray(raw) ? raw : [raw]).map((a) => (a < 0 ? a + rank : a)))].sort((p, q) => p - q);
    const keepDims = Boolean((attrs as { keepDims?: boolean }).keepDims);
    const contiguous = axes.length > 0 && axes.every((a, i) => a === axes[0] + i);
    const last = axes[axes.length - 1];
    if (x.dtype !== 'float32' || !contiguous || last === rank - 1) return original({ inputs, attrs, backend });
    const size = (dims: number[]) => dims.reduce((p, q) => p * q, 1);
    const B = size(x.shape.slice(0, axes[0]));
    const P = size(x.shape.slice(axes[0], last + 1));
    const Q = size(x.shape.slice(last + 1));
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const reshape = kernel('Reshape');
    const fill = kernel('Fill');
    const bmm = kernel('BatchMatMul');
    if (P <= 65536) {
      // XNNPACK's average pooling over a [P,1] window reads x once: ~4x faster than a batched matmul
      // (per-image spatial sums, group norm's statistics), ~15x for B = 1 (bias gradients), where
      // the matmul repacks its fresh x operand on every call
      const avgPool = kernel('AvgPool');
      const mul = kernel('Multiply');
      return scoped(backend, (keep) => {
        const x4 = keep(reshape({ inputs: { x }, attrs: { shape: [B, P, 1, Q] }, backend }));
        let r = keep(avgPool({ inputs: { x: x4 }, attrs: { filterSize: [P, 1], strides: 1, pad: 'valid' }, backend }));
        if (!mean) {
          const p = keep(fill({ inputs: {}, attrs: { shape: [], value: P, dtype: 'float32' }, backend }));
          r = keep(mul({ inputs: { a: r, b: p }, backend }));
        }
        return keep(reshape({ inputs: { x: r }, attrs: { shape: outShape }, backend }));
      });
    }
    return scoped(backend, (keep) => {
      const x3 = keep(reshape({ inputs: { x }, attrs: { shape: [B, P, Q] }, backend }));
      const ones = keep(fill({ inputs: {}, attrs: { shape: [B, 1, P], value: mean ? 1 / P : 1, dtype: 'float32' }, backend }));
      const r = keep(bmm({ inputs: { a: ones, b: x3 }, attrs: { transposeA: false, transposeB: false }, backend }));
      return keep(reshape({ inputs: { x: r }, attrs: { shape: outShape }, backend }));
    });
  };
}

/**
 * wasm's Identity (tf.clone, and Cast to the same dtype, which gradients call on every Multiply) copies
 * the buffer; tensors are immutable, so share it by reference count as Reshape does and as the cpu
 * backend's Identity does. Saves several hundred full-activation copies per U-Net training step.
 */
function sharedIdentity(original: KernelFn, isCast: boolean): KernelFn {
  return ({ inputs, attrs = {}, backend }) => {
    const x = inputs.x;
    const dtype = isCast ? (attrs as { dtype: string }).dtype : x.dtype;
    if (x.dtype === 'string' || dtype !== x.dtype) return original({ inputs, attrs, backend });
    (backend as Backend & { incRef(dataId: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

/**
 * wasm's Slice copies a non-contiguous block (e.g. the channel halves a concat's gradient splits
 * off, SplitV) with one `subarray().set()` per innermost run after copying the whole input out of
 * the heap: ~90 ms for [64,28,28,128]. Copy float32 runs straight from heap view to heap view.
 */
function fastSlice(original: KernelFn): KernelFn {
  return ({ inputs, attrs = {}, backend }) => {
    const x = inputs.x;
    const rank = x.shape.length;
    if (x.dtype !== 'float32' || rank < 2 || rank > 4) return original({ inputs, attrs, backend });
    const a = attrs as { begin: number | number[]; size: number | number[] };
    const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, a.begin, a.size);
    if (tf.slice_util.isSliceContinous(x.shape, begin, size)) return original({ inputs, attrs, backend });
    const b = backend as HeapBackend;
    const pad = 4 - rank;
    const shape = [...Array(pad).fill(1), ...x.shape];
    const bg = [...Array(pad).fill(0), ...begin];
    const sz = [...Array(pad).fill(1), ...size];
    const out = b.makeOutput(size, 'float32');
    const src = b.typedArrayFromHeap(x);
    const dst = b.typedArrayFromHeap(out);
    const s2 = shape[3];
    const s1 = shape[2] * s2;
    const s0 = shape[1] * s1;
    const run = sz[3];
    let o = 0;
    for (let i = bg[0]; i < bg[0] + sz[0]; i++) {
      for (let j = bg[1]; j < bg[1] + sz[1]; j++) {
        for (let k = bg[2]; k < bg[2] + sz[2]; k++) {
          const from = i * s0 + j * s1 + k * s2 + bg[3];
          if (run >= 64) dst.set(src.subarray(from, from + run), o);
          else for (let q = 0; q < run; q++) dst[o + q] = src[from + q];
          o += run;
        }
      }
    }
    return out;
  };
}

/** SplitV as slices through the (fast) registered Slice kernel; the stock one calls its own slice directly. */
function splitVBySlices(): KernelFn {
  return ({ inputs, attrs = {}, backend }) => {
    const x = inputs.x;
    const { numOrSizeSplits, axis } = attrs as { numOrSizeSplits: number | number[]; axis: number | number[] };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, ax);
    const slice = kernel('Slice');
    const begin = x.shape.map(() => 0);
    return sizes.map((s) => {
      const size = [...x.shape];
      size[ax] = s;
      const piece = slice({ inputs: { x }, attrs: { begin: [...begin], size }, backend });
      begin[ax] += s;
      return piece;
    }) as unknown as TensorInfo;
  };
}

/**
 * Gradient of the U-Net's 2x nearest-neighbour upsampling: each input pixel receives the sum of its
 * 2x2 output block, i.e. 4 x AvgPool(2, 2) (XNNPACK), instead of wasm's scalar loop.
 */
function fastResizeNearestGrad(original: KernelFn): KernelFn {
  return ({ inputs, attrs = {}, backend }) => {
    const { images, dy } = inputs as { images: TensorInfo; dy: TensorInfo };
    const { alignCorners, halfPixelCenters } = attrs as { alignCorners?: boolean; halfPixelCenters?: boolean };
    const [, h, w] = images.shape;
    const exact2x = dy.shape[1] === 2 * h && dy.shape[2] === 2 * w;
    if (alignCorners || halfPixelCenters || !exact2x || images.dtype !== 'float32') return original({ inputs, attrs, backend });
    const avgPool = kernel('AvgPool');
    const mul = kernel('Multiply');
    const fill = kernel('Fill');
    return scoped(backend, (keep) => {
      const pooled = keep(avgPool({ inputs: { x: dy }, attrs: { filterSize: 2, strides: 2, pad: 'valid' }, backend }));
      const four = keep(fill({ inputs: {}, attrs: { shape: [], value: 4, dtype: 'float32' }, backend }));
      return keep(mul({ inputs: { a: pooled, b: four }, backend }));
    });
  };
}

let registered = false;

/** Register (or replace) the wasm training kernels. Idempotent. */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  for (const [name, fn] of [
    ['Conv2DBackpropFilter', conv2DBackpropFilterWasm],
    ['Conv2DBackpropInput', conv2DBackpropInputWasm],
  ] as const) {
    if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: fn as unknown as tf.KernelFunc });
  }
  for (const name of ['BatchMatMul', '_FusedMatMul']) {
    const original = kernel(name);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: transposeFirst(original) as unknown as tf.KernelFunc });
  }
  for (const [name, mean] of [['Sum', false], ['Mean', true]] as const) {
    const original = kernel(name);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: reduceByMatMul(original, mean) as unknown as tf.KernelFunc });
  }
  for (const [name, wrap] of [['Slice', fastSlice], ['ResizeNearestNeighborGrad', fastResizeNearestGrad]] as const) {
    const original = kernel(name);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: wrap(original) as unknown as tf.KernelFunc });
  }
  for (const [name, wrap] of [['Conv2D', fastConv], ['FusedConv2D', fastFusedConv]] as const) {
    const original = kernel(name);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: wrap(original) as unknown as tf.KernelFunc });
  }
  tf.unregisterKernel('SplitV', 'wasm');
  tf.registerKernel({ kernelName: 'SplitV', backendName: 'wasm', kernelFunc: splitVBySlices() as unknown as tf.KernelFunc });
  for (const [name, isCast] of [['Identity', false], ['Cast', true]] as const) {
    const original = kernel(name);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: sharedIdentity(original, isCast) as unknown as tf.KernelFunc });
  }
  registerNativeGroupNorm();
  registered = true;
}
