/** One rolling checkpoint per model: model tensors + optimizer state + loop state, overwritten atomically. */
import { tf, type Tensor } from '../backend/index.js';
import { loadWeights, saveWeights, weightsExist, type NamedTensors } from '../models/weights.js';

export interface LoopState {
  epoch: number; // epochs completed
  step: number; // optimizer steps taken
  seed: number;
  [k: string]: unknown;
}

export async function saveCheckpoint(path: string, model: NamedTensors, optimizer: tf.Optimizer, state: LoopState): Promise<void> {
  const opt = await optimizer.getWeights();
  const all: NamedTensors = {};
  for (const [k, v] of Object.entries(model)) all[`model/${k}`] = v;
  opt.forEach((w, i) => (all[`opt/${i}/${w.name}`] = w.tensor));
  saveWeights(path, all, { ...state, optimizerOrder: opt.map((w) => w.name) });
  // getWeights() makes a fresh scalar for the iteration count ('iter'); the rest are the optimizer's own variables
  for (const w of opt) if (w.name === 'iter') w.tensor.dispose();
}

export function checkpointExists(path: string): boolean {
  return weightsExist(path);
}

/** A checkpoint's model tensors (the caller disposes them) and loop state, without the optimizer's (freed). */
export function loadCheckpointModel(path: string): { model: NamedTensors; state: LoopState } {
  const { model, opt, state } = readCheckpoint(path);
  tf.dispose(opt.map((o) => o.tensor));
  return { model, state };
}

/** Returns model tensors (caller assigns then disposes), restores the optimizer, and the loop state. */
export async function loadCheckpoint(path: string, optimizer: tf.Optimizer): Promise<{ model: NamedTensors; state: LoopState }> {
  const { model, opt, state } = readCheckpoint(path);
  await optimizer.setWeights(opt);
  tf.dispose(opt.map((o) => o.tensor));
  return { model, state };
}

function readCheckpoint(path: string): { model: NamedTensors; opt: { name: string; tensor: Tensor }[]; state: LoopState } {
  const { meta, tensors } = loadWeights<LoopState & { optimizerOrder: string[] }>(path);
  const model: NamedTensors = {};
  for (const [k, v] of Object.entries(tensors)) {
    if (k.startsWith('model/')) model[k.slice(6)] = v;
  }
  const opt = meta.optimizerOrder.map((name, i) => ({ name, tensor: tensors[`opt/${i}/${name}`] }));
  return { model, opt, state: meta };
}

/** Put a checkpoint's `net/<k>` weights into the trained variables and its `ema/<k>` copies into `ema` (replacing them); frees the checkpoint's tensors. */
export function restoreNetAndEma(model: Record<string, tf.Tensor>, vars: Record<string, tf.Variable>, ema: Record<string, tf.Tensor>): void {
  for (const [k, v] of Object.entries(vars)) {
    v.assign(model[`net/${k}`]);
    ema[k].dispose();
    ema[k] = model[`ema/${k}`].clone();
  }
  tf.dispose(Object.values(model));
}

/** Gradients scaled so that their global L2 norm is at most `max` (tensors in the caller's tidy). */
export function clipByGlobalNorm(grads: Record<string, tf.Tensor>, max = 1): Record<string, tf.Tensor> {
  const norm = tf.sqrt(tf.addN(Object.values(grads).map((x) => x.square().sum())));
  const scale = tf.minimum(1, tf.div(max, norm.add(1e-6)));
  return Object.fromEntries(Object.entries(grads).map(([k, v]) => [k, v.mul(scale)]));
}

/**
 * One EMA step after optimizer step `step` (1-based): ema <- d ema + (1 - d) vars, with the warm-up
 * d = min(decay, (1 + step) / (10 + step)). Frees the old EMA tensors and returns the new ones.
 */
export function emaUpdate(ema: Record<string, tf.Tensor>, vars: Record<string, tf.Variable>, step: number, decay: number): Record<string, tf.Tensor> {
  const d = Math.min(decay, (1 + step) / (10 + step));
  const next: Record<string, tf.Tensor> = {};
  tf.tidy(() => {
    for (const [k, v] of Object.entries(vars)) next[k] = tf.keep(ema[k].mul(d).add(v.mul(1 - d)));
  });
  tf.dispose(Object.values(ema));
  return next;
}
