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
}

export function checkpointExists(path: string): boolean {
  return weightsExist(path);
}

/** Returns model tensors (caller assigns then disposes), restores the optimizer, and the loop state. */
export async function loadCheckpoint(path: string, optimizer: tf.Optimizer): Promise<{ model: NamedTensors; state: LoopState }> {
  const { meta, tensors } = loadWeights<LoopState & { optimizerOrder: string[] }>(path);
  const model: NamedTensors = {};
  const opt: { name: string; tensor: Tensor }[] = [];
  for (const [k, v] of Object.entries(tensors)) {
    if (k.startsWith('model/')) model[k.slice(6)] = v;
  }
  meta.optimizerOrder.forEach((name, i) => opt.push({ name, tensor: tensors[`opt/${i}/${name}`] }));
  await optimizer.setWeights(opt);
  tf.dispose(opt.map((o) => o.tensor));
  return { model, state: meta };
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
