import { describe, it, expect, beforeAll } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { tf } from '../src/backend/index.js';
import { NATIVE_KERNELS_SOURCE_SHA256 } from '../src/backend/native-kernels-wasm.js';
import { registerWasmTrainingKernels, setFilterGradChunkFloats } from '../src/backend/wasm-kernels.js';
import { nativeConvCount, nativeKernelsLoaded, setNativeKernel } from '../src/backend/native.js';
import { nativeGroupNormSiluApplies } from '../src/backend/native-norm.js';
import { groupNorm, groupNormSilu, silu } from '../src/models/unet.js';

type Case = { b: number; h: number; w: number; cin: number; cout: number; k: number; s: number; pad: 'same' | 'valid' };

const cases: Case[] = [
  { b: 3, h: 9, w: 9, cin: 4, cout: 5, k: 3, s: 1, pad: 'same' },
  { b: 3, h: 9, w: 9, cin: 4, cout: 5, k: 3, s: 1, pad: 'valid' },
  { b: 2, h: 10, w: 10, cin: 3, cout: 6, k: 3, s: 2, pad: 'same' },
  { b: 2, h: 11, w: 11, cin: 3, cout: 6, k: 3, s: 2, pad: 'same' },
  { b: 2, h: 10, w: 10, cin: 3, cout: 6, k: 3, s: 2, pad: 'valid' },
  { b: 2, h: 11, w: 11, cin: 3, cout: 6, k: 3, s: 2, pad: 'valid' },
  { b: 2, h: 8, w: 8, cin: 5, cout: 2, k: 1, s: 1, pad: 'same' },
  { b: 2, h: 14, w: 14, cin: 4, cout: 4, k: 4, s: 2, pad: 'same' },
  // strided input gradients go by phases (sub-pixel conv + DepthToSpace): odd sizes, padding before, s 3, k < s
  { b: 2, h: 7, w: 7, cin: 3, cout: 4, k: 3, s: 2, pad: 'same' },
  { b: 2, h: 9, w: 12, cin: 3, cout: 4, k: 5, s: 2, pad: 'same' },
  { b: 2, h: 10, w: 11, cin: 2, cout: 3, k: 3, s: 3, pad: 'same' },
  { b: 2, h: 11, w: 10, cin: 2, cout: 3, k: 3, s: 3, pad: 'valid' },
  { b: 2, h: 9, w: 9, cin: 3, cout: 2, k: 1, s: 2, pad: 'same' },
  { b: 2, h: 12, w: 12, cin: 3, cout: 2, k: 2, s: 3, pad: 'valid' },
  // the SIMD filter-gradient kernel's 4x8 tiles with every remainder (channels not multiples of 4 or 8)
  { b: 2, h: 9, w: 10, cin: 6, cout: 13, k: 3, s: 1, pad: 'same' },
  { b: 2, h: 11, w: 9, cin: 8, cout: 16, k: 3, s: 2, pad: 'same' },
  { b: 1, h: 7, w: 8, cin: 5, cout: 12, k: 3, s: 2, pad: 'valid' },
  { b: 3, h: 10, w: 10, cin: 4, cout: 8, k: 5, s: 1, pad: 'same' },
  { b: 2, h: 6, w: 6, cin: 9, cout: 7, k: 1, s: 1, pad: 'valid' },
];

function grads(c: Case, backend: string, x: Float32Array, wv: Float32Array, dyv: Float32Array) {
  const prev = tf.getBackend();
  tf.setBackend(backend);
  const out = tf.tidy(() => {
    const xt = tf.tensor4d(x, [c.b, c.h, c.w, c.cin]);
    const wt = tf.tensor4d(wv, [c.k, c.k, c.cin, c.cout]);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad);
    const dy = tf.tensor(dyv, f(xt, wt).shape);
    // d/dx and d/dw of sum(conv(x, w) * dy) are exactly Conv2DBackpropInput and Conv2DBackpropFilter of dy.
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a, b).mul(dy).sum())([xt, wt]);
    return { dw: dw.dataSync().slice(), dx: dx.dataSync().slice() };
  });
  tf.setBackend(prev);
  return out;
}

function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let maxAbs = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return maxAbs / Math.max(scale, 1e-12);
}

describe('wasm training kernels match the cpu backend', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    registerWasmTrainingKernels();
  });

  /** wasm's dx and dW against the cpu backend's on random data; with `chunk`, the filter gradient forced into batch chunks of that size. */
  function checkAgainstCpu(c: Case, chunk?: number, native = true): void {
    const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
    const x = rnd(c.b * c.h * c.w * c.cin);
    const wv = rnd(c.k * c.k * c.cin * c.cout);
    const yShape = tf.tidy(() => tf.conv2d(tf.zeros([c.b, c.h, c.w, c.cin]) as tf.Tensor4D, tf.zeros([c.k, c.k, c.cin, c.cout]) as tf.Tensor4D, c.s, c.pad).shape);
    const dyv = rnd(yShape.reduce((p, q) => p * q, 1));
    const before = tf.memory().numTensors;
    const ref = grads(c, 'cpu', x, wv, dyv);
    const prev = chunk === undefined ? undefined : setFilterGradChunkFloats(chunk * yShape[1] * yShape[2] * c.cout);
    const prevNative = setNativeKernel('filterGrad', native);
    try {
      const got = grads(c, 'wasm', x, wv, dyv);
      expect(tf.memory().numTensors).toBe(before);
      expect(got.dw.length).toBe(ref.dw.length);
      expect(got.dx.length).toBe(ref.dx.length);
      expect(maxRelErr(got.dw, ref.dw)).toBeLessThan(1e-4);
      expect(maxRelErr(got.dx, ref.dx)).toBeLessThan(1e-4);
    } finally {
      if (prev !== undefined) setFilterGradChunkFloats(prev);
      setNativeKernel('filterGrad', prevNative);
    }
  }

  it('loads our SIMD kernels on the backend heap (not the composed fallbacks)', () => {
    expect(nativeKernelsLoaded()).toBe(true);
  });

  it('ships the wasm module built from the committed C source (rerun `npm run build:wasm` after editing it)', () => {
    const source = readFileSync(new URL('../src/backend/native/kernels.c', import.meta.url));
    expect(createHash('sha256').update(source).digest('hex')).toBe(NATIVE_KERNELS_SOURCE_SHA256);
  });

  for (const c of cases) {
    it(`conv ${c.k}x${c.k} stride ${c.s} ${c.pad} on ${c.h}x${c.w}, ${c.cin} -> ${c.cout} channels`, () => checkAgainstCpu(c));
    it(`conv ${c.k}x${c.k} stride ${c.s} ${c.pad} on ${c.h}x${c.w}, ${c.cin} -> ${c.cout} channels, composed filter gradient`, () => checkAgainstCpu(c, undefined, false));
  }

  // the composed filter gradient of a large batch goes in batch chunks (summed): force small chunks on small shapes
  const chunked: (Case & { chunk: number })[] = [
    { b: 12, h: 9, w: 9, cin: 3, cout: 4, k: 3, s: 1, pad: 'same', chunk: 4 },
    { b: 12, h: 10, w: 10, cin: 3, cout: 5, k: 3, s: 2, pad: 'same', chunk: 6 },
    { b: 10, h: 11, w: 11, cin: 2, cout: 3, k: 3, s: 2, pad: 'valid', chunk: 5 },
    { b: 8, h: 6, w: 6, cin: 4, cout: 2, k: 1, s: 1, pad: 'same', chunk: 4 },
  ];
  for (const c of chunked) {
    it(`conv ${c.k}x${c.k} stride ${c.s} ${c.pad}, batch ${c.b} in chunks of ${c.chunk}`, () => checkAgainstCpu(c, c.chunk, false));
  }

  it('trains a conv layer end to end (gradient through fused conv + relu)', () => {
    const opt = tf.train.sgd(0.5);
    const before = tf.memory().numTensors;
    const w0 = tf.randomNormal([3, 3, 1, 4], 0, 0.3, 'float32', 1);
    const w = tf.variable(w0);
    w0.dispose();
    const x = tf.randomUniform([4, 8, 8, 1], 0, 1, 'float32', 2) as tf.Tensor4D;
    const loss = () => tf.tidy(() => tf.fused.conv2d({ x, filter: w as unknown as tf.Tensor4D, strides: 2, pad: 'same', activation: 'relu' }).square().mean() as tf.Scalar);
    const value = () => { const t = loss(); const v = t.dataSync()[0]; t.dispose(); return v; };
    const l0 = value();
    for (let i = 0; i < 10; i++) tf.dispose(opt.minimize(loss, true) ?? []);
    const l1 = value();
    expect(l1).toBeLessThan(l0);
    tf.dispose([w, x]);
    expect(tf.memory().numTensors).toBe(before);
    opt.dispose();
  });
});

describe('our SIMD forward conv matches the cpu backend and the stock wasm kernel', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    registerWasmTrainingKernels();
  });

  type FwdCase = { b: number; h: number; w: number; cin: number; cout: number; k: number; s: number; pad: 'same' | 'valid'; act: 'linear' | 'relu' | 'none' };
  const fwdCases: FwdCase[] = [
    { b: 2, h: 9, w: 13, cin: 8, cout: 8, k: 3, s: 1, pad: 'same', act: 'relu' },
    { b: 2, h: 10, w: 25, cin: 12, cout: 16, k: 3, s: 2, pad: 'same', act: 'linear' },
    { b: 1, h: 11, w: 27, cin: 9, cout: 24, k: 3, s: 2, pad: 'valid', act: 'none' },
    { b: 3, h: 12, w: 13, cin: 16, cout: 8, k: 5, s: 1, pad: 'same', act: 'relu' },
    { b: 2, h: 7, w: 12, cin: 8, cout: 16, k: 1, s: 1, pad: 'valid', act: 'linear' },
    { b: 1, h: 4, w: 13, cin: 8, cout: 8, k: 5, s: 1, pad: 'same', act: 'none' }, // no interior row at all
    { b: 2, h: 28, w: 28, cin: 32, cout: 32, k: 3, s: 1, pad: 'same', act: 'relu' }, // the U-Net's main shape
  ];

  function run(c: FwdCase, x: Float32Array, wv: Float32Array, bv: Float32Array): Float32Array {
    return tf.tidy(() => {
      const xt = tf.tensor4d(x, [c.b, c.h, c.w, c.cin]);
      const wt = tf.tensor4d(wv, [c.k, c.k, c.cin, c.cout]);
      const y = c.act === 'none'
        ? tf.conv2d(xt, wt, c.s, c.pad)
        : tf.fused.conv2d({ x: xt, filter: wt, bias: tf.tensor1d(bv), strides: c.s, pad: c.pad, activation: c.act });
      return y.dataSync().slice() as Float32Array;
    });
  }

  for (const c of fwdCases) {
    it(`${c.act === 'none' ? 'conv' : `fused conv (${c.act})`} ${c.k}x${c.k} stride ${c.s} ${c.pad} on ${c.h}x${c.w}, ${c.cin} -> ${c.cout}`, () => {
      const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
      const x = rnd(c.b * c.h * c.w * c.cin);
      const wv = rnd(c.k * c.k * c.cin * c.cout);
      const bv = rnd(c.cout);
      tf.setBackend('cpu');
      const ref = run(c, x, wv, bv);
      tf.setBackend('wasm');
      const before = tf.memory().numTensors;
      const calls = nativeConvCount();
      const got = run(c, x, wv, bv);
      expect(nativeConvCount()).toBe(calls + 1);
      const prev = setNativeKernel('conv', false);
      let stock: Float32Array;
      try {
        stock = run(c, x, wv, bv);
      } finally {
        setNativeKernel('conv', prev);
      }
      expect(nativeConvCount()).toBe(calls + 1);
      expect(tf.memory().numTensors).toBe(before);
      expect(got.length).toBe(ref.length);
      expect(maxRelErr(got, ref)).toBeLessThan(1e-5);
      expect(maxRelErr(got, stock)).toBeLessThan(1e-6);
    });
  }

  it('leaves convs it does not cover to the stock kernel (output channels not a multiple of 8, few input channels, narrow rows, dilation)', () => {
    const calls = nativeConvCount();
    tf.tidy(() => {
      tf.conv2d(tf.ones([1, 6, 6, 8]) as tf.Tensor4D, tf.ones([3, 3, 8, 5]) as tf.Tensor4D, 1, 'same').dataSync();
      tf.conv2d(tf.ones([1, 6, 12, 3]) as tf.Tensor4D, tf.ones([3, 3, 3, 8]) as tf.Tensor4D, 1, 'same').dataSync();
      tf.conv2d(tf.ones([1, 7, 7, 8]) as tf.Tensor4D, tf.ones([3, 3, 8, 8]) as tf.Tensor4D, 1, 'same').dataSync();
      const y = tf.conv2d(tf.ones([1, 9, 20, 8]) as tf.Tensor4D, tf.ones([3, 3, 8, 8]) as tf.Tensor4D, 1, 'valid', 'NHWC', 2);
      expect(y.shape).toEqual([1, 5, 16, 8]);
      expect(y.dataSync()[0]).toBe(72);
    });
    expect(nativeConvCount()).toBe(calls);
  });
});

describe('our fused group norm + SiLU kernels match the composed tfjs ops', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    registerWasmTrainingKernels();
  });

  /** y, dL/dx, dL/dg, dL/db of sum(groupNormSilu(x) * w) with the native kernels on or off */
  function values(x: tf.Tensor4D, g: tf.Tensor, b: tf.Tensor, w: tf.Tensor, groups: number, native: boolean): Float32Array[] {
    const prev = setNativeKernel('groupNorm', native);
    try {
      return tf.tidy(() => {
        const y = groupNormSilu(x, g, b, groups);
        const grads = tf.grads((a: tf.Tensor, p: tf.Tensor, q: tf.Tensor) => groupNormSilu(a as tf.Tensor4D, p, q, groups).mul(w).sum())([x, g, b]);
        return [y, ...grads].map((t) => t.dataSync().slice() as Float32Array);
      });
    } finally {
      setNativeKernel('groupNorm', prev);
    }
  }

  const shapes: [[number, number, number, number], number, number][] = [
    [[3, 5, 4, 8], 4, 1.5], [[2, 7, 7, 32], 8, 1.5], [[1, 3, 3, 4], 1, 1.5], [[2, 6, 5, 12], 3, 1.5], [[2, 14, 14, 48], 8, 1.5],
    [[2, 4, 4, 16], 4, 80], // SiLU saturated both ways (|z| up to ~100): no NaN or inf
  ];
  for (const [shape, groups, spread] of shapes) {
    it(`forward and gradients (x, gain, bias) for ${shape.join('x')} in ${groups} groups, inputs spread ${spread}`, () => {
      const c = shape[3];
      const x = tf.randomNormal(shape, 0.3, spread, 'float32', 1) as tf.Tensor4D;
      const g = tf.randomNormal([c], 1, 0.3, 'float32', 2);
      const b = tf.randomNormal([c], 0, spread === 1.5 ? 0.3 : 50, 'float32', 3);
      const w = tf.randomNormal(shape, 0, 1, 'float32', 4);
      expect(nativeGroupNormSiluApplies(x, g, b, groups)).toBe(true);
      const before = tf.memory().numTensors;
      const got = values(x, g, b, w, groups, true);
      const want = values(x, g, b, w, groups, false);
      expect(tf.memory().numTensors).toBe(before);
      got.forEach((v, i) => {
        expect(v.every(Number.isFinite), `${['y', 'dx', 'dg', 'db'][i]} finite`).toBe(true);
        expect(maxRelErr(v, want[i]), ['y', 'dx', 'dg', 'db'][i]).toBeLessThan(1e-5);
      });
      tf.dispose([x, g, b, w]);
    });
  }

  it('leaves channel counts it does not cover (not a multiple of 4) to the composed ops, with the same results', () => {
    const x = tf.randomNormal([2, 5, 5, 6], 0, 1, 'float32', 5) as tf.Tensor4D;
    const g = tf.ones([6]);
    const b = tf.zeros([6]);
    expect(nativeGroupNormSiluApplies(x, g, b, 3)).toBe(false);
    const d = tf.tidy(() => tf.max(tf.abs(groupNormSilu(x, g, b, 3).sub(silu(groupNorm(x, g, b, 3))))).dataSync()[0]);
    expect(d).toBe(0);
    tf.dispose([x, g, b]);
  });
});

describe('wasm reductions and matmuls match the cpu backend', () => {
  const onBoth = (f: () => tf.Tensor) => {
    const prev = tf.getBackend();
    const run = (b: string) => {
      tf.setBackend(b);
      const t = f();
      const v = { data: t.dataSync().slice(), shape: t.shape };
      t.dispose();
      return v;
    };
    const ref = run('cpu');
    const got = run('wasm');
    tf.setBackend(prev);
    return { ref, got };
  };
  const data = Float32Array.from({ length: 2 * 5 * 6 * 7 }, (_, i) => Math.sin(i * 1.7));

  for (const [axes, keepDims] of [[[0, 1, 2], false], [[1, 2], true], [[0], false], [[3], false], [[1, 2, 3], false], [[0, 2], false], [[-2], true]] as const) {
    it(`sum and mean over ${axes} keepDims=${keepDims}`, () => {
      for (const op of ['sum', 'mean'] as const) {
        const { ref, got } = onBoth(() => tf.tidy(() => tf.tensor4d(data, [2, 5, 6, 7])[op]([...axes], keepDims)));
        expect(got.shape).toEqual(ref.shape);
        expect(maxRelErr(got.data, ref.data)).toBeLessThan(1e-5);
      }
    });
  }

  it('matmul with transposed operands', () => {
    const a = Float32Array.from({ length: 3 * 4 * 5 }, (_, i) => Math.cos(i));
    const b = Float32Array.from({ length: 3 * 4 * 6 }, (_, i) => Math.sin(i * 0.3));
    const { ref, got } = onBoth(() => tf.tidy(() => tf.matMul(tf.tensor3d(a, [3, 4, 5]), tf.tensor3d(b, [3, 4, 6]), true, false)));
    expect(maxRelErr(got.data, ref.data)).toBeLessThan(1e-5);
    const r2 = onBoth(() => tf.tidy(() => tf.matMul(tf.tensor2d(a.slice(0, 20), [4, 5]), tf.tensor2d(b.slice(0, 30), [6, 5]), false, true)));
    expect(maxRelErr(r2.got.data, r2.ref.data)).toBeLessThan(1e-5);
  });

  it('slices (non-contiguous, ranks 2-4) and split along any axis', () => {
    const cases: [number[], number[], number[]][] = [
      [[2, 5, 6, 7], [0, 1, 2, 3], [2, 3, 4, 4]],
      [[2, 5, 6, 7], [1, 0, 0, 2], [1, 5, 6, 5]],
      [[10, 21], [3, 4], [5, 17]],
      [[5, 6, 14], [1, 2, 0], [3, 3, 14]],
    ];
    for (const [shape, begin, size] of cases) {
      const { ref, got } = onBoth(() => tf.tidy(() => tf.slice(tf.tensor(data.slice(0, shape.reduce((p, q) => p * q)), shape), begin, size)));
      expect(got.shape).toEqual(ref.shape);
      expect(Array.from(got.data)).toEqual(Array.from(ref.data));
    }
    for (const axis of [0, 1, 2, 3]) {
      const { ref, got } = onBoth(() => tf.tidy(() => tf.concat(tf.split(tf.tensor4d(data, [2, 5, 6, 7]), axis === 3 ? [3, 4] : axis === 0 ? 2 : [2, -1], axis).map((t) => t.add(1)), axis)));
      expect(Array.from(got.data)).toEqual(Array.from(ref.data));
    }
  });

  it('gradient of 2x nearest-neighbour upsampling is the 2x2 block sum, and clone/cast share data without leaks', () => {
    // (tfjs's cpu ResizeNearestNeighborGrad is wrong for batch > 1, so the reference is the definition)
    const x = tf.tensor4d(data.slice(0, 2 * 3 * 4 * 5), [2, 3, 4, 5]);
    const w = Float32Array.from({ length: 2 * 6 * 8 * 5 }, (_, i) => Math.cos(i * 0.7));
    const want = new Float32Array(120);
    for (let n = 0; n < 2; n++) for (let y = 0; y < 6; y++) for (let v = 0; v < 8; v++) for (let c = 0; c < 5; c++) {
      want[((n * 3 + (y >> 1)) * 4 + (v >> 1)) * 5 + c] += w[((n * 6 + y) * 8 + v) * 5 + c];
    }
    const g = tf.tidy(() => tf.grad((v: tf.Tensor) => tf.image.resizeNearestNeighbor(v as tf.Tensor4D, [6, 8]).mul(tf.tensor4d(w, [2, 6, 8, 5])).sum())(x));
    expect(maxRelErr(g.dataSync(), want)).toBeLessThan(1e-5);
    tf.dispose([x, g]);
    const before = tf.memory().numTensors;
    const a = tf.tensor1d([1, 2, 3]);
    const b = tf.clone(a);
    const c = tf.cast(a, 'float32');
    a.dispose();
    expect(Array.from(b.dataSync())).toEqual([1, 2, 3]);
    b.dispose();
    expect(Array.from(c.dataSync())).toEqual([1, 2, 3]);
    const d = tf.cast(c, 'int32');
    expect(Array.from(d.dataSync())).toEqual([1, 2, 3]);
    d.dispose();
    c.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('batch-norm gradient override', () => {
  it('matches central finite differences for x, mean, variance, scale and offset', () => {
    const prev = tf.getBackend();
    tf.setBackend('cpu');
    const x = tf.randomNormal([2, 3, 3, 4], 0, 1, 'float32', 1);
    const w = tf.randomNormal([2, 3, 3, 4], 0, 1, 'float32', 2);
    const args = [x, tf.tensor1d([0.1, -0.2, 0.3, 0]), tf.tensor1d([1, 2, 0.5, 1.5]), tf.tensor1d([1, 0.5, 2, 1]), tf.tensor1d([0, 1, 0, -1])];
    const f = (xx: tf.Tensor, m: tf.Tensor, v: tf.Tensor, s: tf.Tensor, o: tf.Tensor) => tf.batchNorm(xx, m, v, o, s, 1e-3).mul(w).sum();
    const g = tf.grads(f)(args);
    g.forEach((gi, k) => {
      const base = args[k].dataSync();
      for (let i = 0; i < Math.min(base.length, 6); i++) {
        const h = 1e-3;
        const at = (delta: number) => {
          const p = base.slice();
          p[i] += delta;
          return tf.tidy(() => f(...(args.map((a, j) => (j === k ? tf.tensor(p, a.shape) : a)) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])).dataSync()[0]);
        };
        const numeric = (at(h) - at(-h)) / (2 * h);
        expect(Math.abs(numeric - gi.dataSync()[i])).toBeLessThan(2e-2 * Math.max(1, Math.abs(numeric)));
      }
    });
    tf.dispose([...args, ...g, w]);
    tf.setBackend(prev);
  });
});

describe('backend initialisation', () => {
  it('leaves no Emscripten process handlers, so an uncaught error prints itself and not the wasm glue', async () => {
    const { spawnSync } = await import('node:child_process');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join, resolve } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'advpurify-init-'));
    try {
      const script = join(dir, 'throws.mts');
      const backend = resolve('src/backend/index.ts');
      writeFileSync(script, `import { initBackend } from ${JSON.stringify(backend)};\n` +
        `const info = await initBackend();\n` +
        `console.log(info.name, process.listeners('uncaughtException').length, process.listeners('unhandledRejection').length);\n` +
        `throw new Error('boom-from-test');\n`);
      const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', env: { ...process.env, ADVPURIFY_BACKEND: 'wasm', ADVPURIFY_QUIET: '1' } });
      expect(r.status).not.toBe(0);
      expect(r.stdout.trim()).toBe('wasm 0 0');
      expect(r.stderr).toContain('boom-from-test');
      expect(r.stderr).not.toContain('WasmBackendModule');
      expect(r.stderr.length).toBeLessThan(4000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
