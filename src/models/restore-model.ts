/**
 * A restoration model: a diffusion model (the same U-Net, fine-tuned on degradations as well as on noise,
 * src/train/restore.ts) whose weights file also holds a level net. It loads with `loadDiffusion`, so
 * diffpure and oneshot run on it unchanged; `mode: 'restore'` also needs its level net.
 *
 * Files: `models/<dataset>/restore.{json,bin}` next to `diffusion.{json,bin}`.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { tf, type Tensor1D, type Tensor4D } from '../backend/index.js';
import { toModelScale } from '../diffusion/gaussian-diffusion.js';
import type { DiffusionMeta, DiffusionModel } from './diffusion-model.js';
import { levelNetForward, levelParams, type LevelNetConfig } from './level-net.js';

export interface RestoreInfo {
  level: LevelNetConfig;
  /** Design (a) vs (b) on the validation split, as measured while training (PSNR in dB; latest last). */
  validation?: { step: number; input: number; cold: number; x0: number }[];
  [k: string]: unknown;
}

export type RestoreMeta = DiffusionMeta & { restore: RestoreInfo };

/**
 * Where the restoration weights of a model live: next to its diffusion weights. `weights` is a shipped
 * model's `.../<name>/diffusion` path, a directory, or the restoration weights' own path prefix.
 */
export function restoreWeightsPath(weights: string): string {
  if (basename(weights) === 'diffusion') return join(dirname(weights), 'restore');
  if (existsSync(weights) && statSync(weights).isDirectory()) return join(weights, 'restore');
  return weights;
}

/** true when the model carries a level net (it was trained by `advpurify train restore`). */
export function isRestoreModel(m: DiffusionModel): boolean {
  return typeof (m.meta as Partial<RestoreMeta>).restore === 'object' && levelParams(m.params) !== undefined;
}

/** The level net's estimate for pixel images x [N,H,W,C] in [0,1]: sigma on the model scale, per image. */
export function predictLevels(m: DiffusionModel, x: Tensor4D): Float32Array {
  const p = levelParams(m.params);
  if (!p) throw new Error('this diffusion model has no level net (train one with `advpurify train restore`)');
  return tf.tidy(() => (levelNetForward(p, toModelScale(x)).exp() as Tensor1D).dataSync() as Float32Array);
}
