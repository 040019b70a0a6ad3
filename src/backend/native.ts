/**
 * Our own wasm SIMD kernels (src/backend/native/kernels.c, embedded by `npm run build:wasm` as
 * native-kernels-wasm.ts): the conv filter gradient, the forward conv and group norm + SiLU (native-norm.ts),
 * instantiated on the tfjs wasm backend's own memory so that they read their operands and write their result in
 * place on its heap.
 */
import { tf } from './tf.js';
import { NATIVE_KERNELS_WASM_BASE64 } from './native-kernels-wasm.js';
import type { Backend, ConvAttrs, KernelFn, OffsetBackend, TensorInfo } from './kernel-types.js';

type FilterGradFn = (x: number, dy: number, dw: number, b: number, h: number, w: number, ci: number, ho: number,
  wo: number, co: number, kh: number, kw: number, sh: number, sw: number, pt: number, pl: number) => void;
type ConvFn = (x: number, w: number, bias: number, y: number, b: number, h: number, wd: number, ci: number, ho: number,
  wo: number, co: number, kh: number, kw: number, sh: number, sw: number, pt: number, pl: number, relu: number) => void;
type GroupNormFn = (x: number, g: number, b: number, y: number, stats: number, scratch: number, n: number, hw: number,
  c: number, groups: number, eps: number, silu: number) => void;
type GroupNormGradFn = (x: number, g: number, b: number, stats: number, dy: number, dx: number, dg: number, db: number,
  scratch: number, n: number, hw: number, c: number, groups: number, silu: number) => void;
export type Native = { filterGrad: FilterGradFn; conv: ConvFn; groupNorm: GroupNormFn; groupNormGrad: GroupNormGradFn };
/** The WebAssembly JS API (a Node global; the build's lib settings do not declare it). */
const WasmApi = (globalThis as unknown as {
  WebAssembly: {
    Memory: new (...args: never[]) => object;
    Module: new (bytes: Uint8Array) => object;
    Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  };
}).WebAssembly;
const nativeByBackend = new WeakMap<object, Native | null>();
/** Which of our kernels run (ADVPURIFY_NATIVE_KERNELS=0 starts with none: the stock and composed tfjs kernels). */
export type NativeKernel = 'filterGrad' | 'conv' | 'groupNorm';
const nativeDefault = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.ADVPURIFY_NATIVE_KERNELS !== '0';
const enabled: Record<NativeKernel, boolean> = { filterGrad: nativeDefault, conv: nativeDefault, groupNorm: nativeDefault };

/** Switch one of our kernels on or off (tests, A/B benchmarks); returns the previous setting. */
export function setNativeKernel(kernel: NativeKernel, on: boolean): boolean {
  const prev = enabled[kernel];
  enabled[kernel] = on;
  return prev;
}

/** Whether one of our kernels is switched on. */
export function nativeKernelOn(kernel: NativeKernel): boolean {
  return enabled[kernel];
}

/**
 * Our own wasm SIMD kernels (src/backend/native/kernels.c), instantiated on the backend's own memory so that
 * they read their operands and write their result in place. Null (the stock / composed paths are used) when the
 * backend's Emscripten module does not expose its memory or the engine lacks wasm SIMD.
 */
export function nativeKernels(backend: Backend): Native | null {
  const cached = nativeByBackend.get(backend);
  if (cached !== undefined) return cached;
  let native: Native | null = null;
  try {
    const mod = (backend as { wasm?: { asm?: { memory?: unknown }; wasmMemory?: unknown } }).wasm;
    const memory = mod?.asm?.memory ?? mod?.wasmMemory;
    if (memory instanceof WasmApi.Memory) {
      const bytes = Uint8Array.from(atob(NATIVE_KERNELS_WASM_BASE64), (ch) => ch.charCodeAt(0));
      const { exports } = new WasmApi.Instance(new WasmApi.Module(bytes), { env: { memory } });
      native = {
        filterGrad: exports.conv_filter_grad as FilterGradFn,
        conv: exports.conv2d_fwd as ConvFn,
        groupNorm: exports.group_norm_silu as GroupNormFn,
        groupNormGrad: exports.group_norm_silu_grad as GroupNormGradFn,
      };
    }
  } catch {
    native = null;
  }
  nativeByBackend.set(backend, native);
  return native;
}

/** Our kernels on `backend` and the heap byte offset of a tensor, for kernels that work in place; null without them. */
export function nativeHeap(backend: Backend): { native: Native; heap: OffsetBackend; off: (t: TensorInfo) => number } | null {
  const native = nativeKernels(backend);
  if (!native) return null;
  const heap = backend as OffsetBackend;
  return { native, heap, off: (t) => heap.dataIdMap.get(t.dataId).memoryOffset };
}

/**
 * Conv2DBackpropFilter in our SIMD kernel (float32; the caller checked NHWC): dw of shape `filterShape`, or null when
 * the kernel is switched off or unavailable (the composed path runs).
 */
export function nativeFilterGrad(x: TensorInfo, dy: TensorInfo, filterShape: [number, number, number, number],
  info: tf.backend_util.Conv2DInfo, backend: Backend): TensorInfo | null {
  if (!enabled.filterGrad || x.dtype !== 'float32' || dy.dtype !== 'float32') return null;
  const h = nativeHeap(backend);
  if (!h) return null;
  const { native, heap, off } = h;
  const out = heap.makeOutput(filterShape, 'float32'); // may grow the heap: offsets are read after it
  const [kh, kw, cin, cout] = filterShape;
  native.filterGrad(off(x), off(dy), off(out), x.shape[0], x.shape[1], x.shape[2], cin, dy.shape[1], dy.shape[2], cout,
    kh, kw, info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left);
  return out;
}

let nativeConvCalls = 0;
/** For tests: how many convs our SIMD forward kernel has run in this thread. */
export function nativeConvCount(): number {
  return nativeConvCalls;
}

/**
 * Conv2D (and FusedConv2D with a per-channel bias and linear or relu activation) in our SIMD kernel: NHWC, float32,
 * dilation 1, >= 8 input channels, output channels a multiple of 8, output rows >= 12 wide. Null where it does not apply (the stock XNNPACK kernel runs).
 */
function nativeConv(x: TensorInfo, filter: TensorInfo, bias: TensorInfo | undefined, relu: boolean, attrs: ConvAttrs & { dilations?: number | [number, number] }, backend: Backend): TensorInfo | null {
  if (!enabled.conv || x.dtype !== 'float32' || filter.dtype !== 'float32') return null;
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') return null;
  const d = attrs.dilations ?? 1;
  if (!(d === 1 || (Array.isArray(d) && d[0] === 1 && d[1] === 1))) return null;
  const [kh, kw, ci, co] = filter.shape;
  if (co % 8 !== 0 || ci < 8 || x.shape.length !== 4 || x.shape[3] !== ci) return null; // ci < 8: XNNPACK is faster
  if (bias && (bias.dtype !== 'float32' || bias.shape.reduce((p, q) => p * q, 1) !== co)) return null;
  const h = nativeHeap(backend);
  if (!h) return null;
  const { native, heap, off } = h;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filter.shape as [number, number, number, number], attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  if (info.outWidth < 12) return null; // narrow rows (the U-Net's 7x7 level): XNNPACK is as fast or faster
  nativeConvCalls++;
  const out = heap.makeOutput([x.shape[0], info.outHeight, info.outWidth, co], 'float32'); // may grow the heap: offsets after
  native.conv(off(x), off(filter), bias ? off(bias) : 0, off(out), x.shape[0], x.shape[1], x.shape[2], ci, info.outHeight,
    info.outWidth, co, kh, kw, info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left, relu ? 1 : 0);
  return out;
}

/** Conv2D through nativeConv where it applies, else the stock kernel. */
export function fastConv(original: KernelFn): KernelFn {
  return ({ inputs, attrs = {}, backend }) =>
    nativeConv(inputs.x, inputs.filter, undefined, false, attrs as unknown as ConvAttrs, backend) ?? original({ inputs, attrs, backend });
}

/** FusedConv2D through nativeConv for a per-channel bias (or none) and linear or relu activation, else the stock kernel. */
export function fastFusedConv(original: KernelFn): KernelFn {
  return ({ inputs, attrs = {}, backend }) => {
    const { activation } = attrs as { activation?: string };
    const act = activation ?? 'linear';
    if ((act === 'linear' || act === 'relu') && !inputs.preluActivationWeights) {
      const out = nativeConv(inputs.x, inputs.filter, inputs.bias, act === 'relu', attrs as unknown as ConvAttrs, backend);
      if (out) return out;
    }
    return original({ inputs, attrs, backend });
  };
}

/** Whether our kernels are loaded on the active backend's heap (false on other backends than wasm). */
export function nativeKernelsLoaded(): boolean {
  if (tf.getBackend() !== 'wasm') return false;
  return nativeKernels(tf.backend() as unknown as Backend) !== null;
}

