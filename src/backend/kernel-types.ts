/** The slice of tfjs's kernel API our wasm kernels use (tfjs does not export these types from its public API). */
import type { tf } from './tf.js';
export type TensorInfo = { dataId: object; shape: number[]; dtype: string };
export type Backend = { disposeData(dataId: object, force?: boolean): boolean };
export type KernelArgs = { inputs: Record<string, TensorInfo>; attrs: Record<string, unknown>; backend: Backend };
export type KernelFn = (args: { inputs: Record<string, TensorInfo>; attrs?: Record<string, unknown>; backend: Backend }) => TensorInfo;

export type ConvAttrs = {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
};

/** The wasm backend's heap access (float32 views of a tensor's bytes; outputs allocated on the heap). */
export type HeapBackend = Backend & {
  typedArrayFromHeap(t: TensorInfo): Float32Array;
  makeOutput(shape: number[], dtype: string): TensorInfo;
};

/** ... and where on the heap a tensor lives (byte offset), for kernels that work in place. */
export type OffsetBackend = HeapBackend & { dataIdMap: { get(id: object): { memoryOffset: number } } };
