/** Messages between the main thread (PurifyPool) and the purification workers. Plain data only. */
import type { ResolvedOptions } from '../purify/options.js';
import type { Rect } from '../purify/patch/box.js';

export type { Rect };

export type TaskKind = 'purify' | 'classify';
export type Fit = 'contain' | 'fill' | 'cover';

/** What a worker is started with (piscina workerData). */
export interface WorkerConfig {
  /** Diffusion weights: shipped name ('fashion-mnist') or a weights path without suffix. */
  diffusion: string;
  /** Classifier weights: shipped name or path; null: no classification in this pool. */
  classifier: string | null;
  /** true: a classifier that fails to load leaves the pool purify-only (classify answers 501) */
  classifierOptional: boolean;
  maxBatch: number;
  maxBatchWaitMs: number;
  /** Linux: added to each worker thread's nice value (0: none) */
  nice: number;
  /** BroadcastChannel name for readiness and stats. */
  channel: string;
}

export interface Task {
  kind: TaskKind;
  image: Uint8Array;
  options: ResolvedOptions;
  fit?: Fit;
  maxPixels?: number;
  /** purify: resize the PNG back to the input's size */
  keepSize?: boolean;
  /** purify: also return the purified pixels (Float32, [draws,H,W,C]) */
  wantPixels?: boolean;
}

/** Modes patch and auto: the region the first draw inpainted (the suspected patch). */
export interface MaskResult {
  /** model resolution, as `data` and `png` */
  width: number;
  height: number;
  /** 0/1 per pixel, row-major [height * width]: 1 = inpainted */
  data: Uint8Array;
  /** the inpainted pixels' bounding rectangle in model pixels; null when nothing was inpainted */
  box: Rect | null;
  /** the same rectangle on the uploaded image (its pixels, the fit undone); null when nothing was inpainted */
  originalBox: Rect | null;
  /** 8-bit grayscale PNG at model resolution, 255 = inpainted */
  png: Uint8Array;
}

interface Common {
  ok: true;
  width: number;
  height: number;
  originalWidth: number;
  originalHeight: number;
  /** images purified together with this one (micro-batch size) */
  batchSize: number;
  /** worker time for the whole batch, ms */
  computeMs: number;
  /** modes patch and auto only */
  mask?: MaskResult;
}

export interface PurifyResult extends Common {
  kind: 'purify';
  png: Uint8Array;
  pixels?: Float32Array;
  shape: [number, number, number, number];
}

export interface ClassifyResult extends Common {
  kind: 'classify';
  index: number;
  classes: string[];
  probabilities: number[];
  votes: number[];
}

export interface TaskError {
  ok: false;
  error: { status: number; code: string; message: string; field?: string };
}

export type TaskResult = PurifyResult | ClassifyResult | TaskError;

/** BroadcastChannel messages. */
export type ChannelMessage =
  | { type: 'ready'; threadId: number; backend: string; classifier: boolean }
  | { type: 'init-failed'; threadId: number; code: string; message: string }
  | { type: 'stats'; id: number }
  | { type: 'stats-reply'; id: number; stats: WorkerStats };

export interface WorkerStats {
  threadId: number;
  ready: boolean;
  backend: string;
  numTensors: number;
  numBytes: number;
  tasks: number;
  batches: number;
  largestBatch: number;
}
