/**
 * Compute backend selection. `ADVPURIFY_BACKEND=tensorflow|wasm|cpu` forces a backend; otherwise
 * auto: tfjs-node-gpu (only if it really drives a GPU) -> tfjs-node -> wasm -> cpu.
 * The choice is logged once (to stderr, unless ADVPURIFY_QUIET=1).
 */
import { tf } from './tf.js';
import { registerWasmTrainingKernels } from './wasm-kernels.js';
import { registerGradientOverrides } from './gradients.js';

export { tf };
export type { Tensor, Tensor1D, Tensor2D, Tensor4D, Scalar } from './tf.js';
export { nativeGroupNormSilu, nativeGroupNormSiluApplies } from './native-norm.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export interface BackendInfo {
  name: BackendName;
  /** true when the tensorflow backend runs on a GPU device */
  gpu: boolean;
  /** human-readable reason for the choice */
  reason: string;
}

let chosen: Promise<BackendInfo> | undefined;

async function tryTensorflow(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<boolean> {
  try {
    // Optional peer dependency: absent in most installs. The specifier is computed so that
    // TypeScript does not require its types.
    await import(/* @vite-ignore */ pkg as string);
  } catch {
    return false;
  }
  try {
    return await tf.setBackend('tensorflow');
  } catch {
    return false;
  }
}

function usingGpu(): boolean {
  const b = tf.backend() as unknown as { isGPUPackage?: boolean; isUsingGpuDevice?: boolean };
  return Boolean(b.isGPUPackage && b.isUsingGpuDevice);
}

type ProcessEvent = 'uncaughtException' | 'unhandledRejection';
const PROCESS_EVENTS: ProcessEvent[] = ['uncaughtException', 'unhandledRejection'];

/**
 * The wasm module (Emscripten) installs process handlers that re-throw every uncaught error from inside
 * its own minified source, so Node prints ~30 kB of that one line above the real error. They change
 * nothing else (Node throws uncaught errors and unhandled rejections by default), so we remove them.
 */
function withoutEmscriptenHandlers<T>(init: () => Promise<T>): Promise<T> {
  type Listener = (...args: unknown[]) => void;
  const listeners = (e: ProcessEvent) => process.listeners(e as 'uncaughtException') as Listener[];
  const before = new Map(PROCESS_EVENTS.map((e) => [e, new Set(listeners(e))]));
  return init().finally(() => {
    for (const e of PROCESS_EVENTS) {
      for (const l of listeners(e)) if (!before.get(e)!.has(l)) process.removeListener(e, l);
    }
  });
}

async function useWasm(): Promise<boolean> {
  try {
    const ok = await withoutEmscriptenHandlers(() => tf.setBackend('wasm'));
    if (ok) registerWasmTrainingKernels();
    return ok;
  } catch {
    return false;
  }
}

async function select(): Promise<BackendInfo> {
  const forced = process.env.ADVPURIFY_BACKEND?.trim().toLowerCase();
  if (forced) {
    if (forced === 'tensorflow') {
      if (await tryTensorflow('@tensorflow/tfjs-node-gpu')) return { name: 'tensorflow', gpu: usingGpu(), reason: 'forced; tfjs-node-gpu' };
      if (await tryTensorflow('@tensorflow/tfjs-node')) return { name: 'tensorflow', gpu: false, reason: 'forced; tfjs-node' };
      throw new Error('ADVPURIFY_BACKEND=tensorflow but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node loads (install one with its native binding)');
    }
    if (forced === 'wasm') {
      if (await useWasm()) return { name: 'wasm', gpu: false, reason: 'forced' };
      throw new Error('ADVPURIFY_BACKEND=wasm but the wasm backend failed to initialise');
    }
    if (forced === 'cpu') {
      await tf.setBackend('cpu');
      return { name: 'cpu', gpu: false, reason: 'forced' };
    }
    throw new Error(`ADVPURIFY_BACKEND must be tensorflow, wasm or cpu, got "${forced}"`);
  }
  if (await tryTensorflow('@tensorflow/tfjs-node-gpu')) {
    if (usingGpu()) return { name: 'tensorflow', gpu: true, reason: 'tfjs-node-gpu with a GPU device' };
  }
  if (await tryTensorflow('@tensorflow/tfjs-node')) return { name: 'tensorflow', gpu: false, reason: 'tfjs-node (CPU)' };
  if (await useWasm()) return { name: 'wasm', gpu: false, reason: 'no tfjs-node binding; wasm SIMD, one core per thread' };
  await tf.setBackend('cpu');
  return { name: 'cpu', gpu: false, reason: 'fallback: pure JS (slow)' };
}

/** Select and initialise the backend once per thread; later calls return the same choice. */
export function initBackend(): Promise<BackendInfo> {
  if (!chosen) {
    registerGradientOverrides();
    chosen = select().then(async (info) => {
      await tf.ready();
      if (process.env.ADVPURIFY_QUIET !== '1') {
        process.stderr.write(`advpurify: backend ${info.name}${info.gpu ? ' (GPU)' : ''}: ${info.reason}\n`);
      }
      return info;
    });
    chosen.catch(() => {
      chosen = undefined;
    });
  }
  return chosen;
}

/**
 * The values of the tensor `f` computes, with every intermediate freed. Use this instead of
 * `tf.tidy(() => f().dataSync())`: tidy walks its return value element by element looking for
 * tensors (~2 us per element, 2 s for a million floats).
 */
export function readTidy(f: () => tf.Tensor): Float32Array | Int32Array | Uint8Array {
  const t = tf.tidy(f);
  try {
    return t.dataSync() as Float32Array | Int32Array | Uint8Array;
  } finally {
    t.dispose();
  }
}
