/**
 * The small Fashion-MNIST / MNIST CNN: (conv3x3-BN-ReLU) x2, maxpool, (conv3x3-BN-ReLU) x2, maxpool,
 * dense 256-ReLU, dropout, dense -> logits. Weights ship in models/<dataset>/<name>.{json,bin}.
 */
import { join } from 'node:path';
import { tf, type Tensor2D, type Tensor4D } from '../backend/index.js';
import type { Classifier } from '../types.js';
import { loadWeights, saveWeights, weightsExist, type NamedTensors, type WeightsDtype } from './weights.js';
import { modelsDir } from './paths.js';

export interface ClassifierMeta {
  kind: 'cnn-classifier';
  dataset: string;
  classNames: string[];
  inputShape: [number, number, number];
  widths: [number, number, number];
  [k: string]: unknown;
}

/** The CNN; with `seed`, its initial weights are a function of the seed (else drawn from Math.random). */
export function buildCnn(inputShape: [number, number, number], classes: number, widths: [number, number, number] = [32, 64, 256], seed?: number): tf.Sequential {
  const [c1, c2, d] = widths;
  const m = tf.sequential({ name: 'cnn' });
  let k = 0;
  const init = () => (seed === undefined ? {} : { kernelInitializer: tf.initializers.glorotUniform({ seed: (seed * 7919 + ++k) >>> 0 }) });
  const conv = (filters: number, name: string, first = false) =>
    tf.layers.conv2d({ name, filters, kernelSize: 3, padding: 'same', useBias: false, ...init(), ...(first ? { inputShape } : {}) });
  m.add(conv(c1, 'c1', true));
  m.add(tf.layers.batchNormalization({ name: 'bn1' }));
  m.add(tf.layers.reLU({ name: 'r1' }));
  m.add(conv(c1, 'c2'));
  m.add(tf.layers.batchNormalization({ name: 'bn2' }));
  m.add(tf.layers.reLU({ name: 'r2' }));
  m.add(tf.layers.maxPooling2d({ name: 'p1', poolSize: 2 }));
  m.add(conv(c2, 'c3'));
  m.add(tf.layers.batchNormalization({ name: 'bn3' }));
  m.add(tf.layers.reLU({ name: 'r3' }));
  m.add(conv(c2, 'c4'));
  m.add(tf.layers.batchNormalization({ name: 'bn4' }));
  m.add(tf.layers.reLU({ name: 'r4' }));
  m.add(tf.layers.maxPooling2d({ name: 'p2', poolSize: 2 }));
  m.add(tf.layers.flatten({ name: 'flat' }));
  m.add(tf.layers.dense({ name: 'fc1', units: d, activation: 'relu', ...init() }));
  m.add(tf.layers.dropout({ name: 'drop', rate: 0.4 }));
  m.add(tf.layers.dense({ name: 'fc2', units: classes, ...init() }));
  return m;
}

/** Weights of a layers model by their stable (original) names. */
export function namedWeights(m: tf.LayersModel): NamedTensors {
  const out: NamedTensors = {};
  for (const w of m.weights) out[w.originalName] = w.read();
  return out;
}

export function assignWeights(m: tf.LayersModel, tensors: NamedTensors): void {
  for (const w of m.weights) {
    const t = tensors[w.originalName];
    if (!t) throw new Error(`weights file lacks ${w.originalName}`);
    if (t.shape.join() !== w.shape.join()) throw new Error(`${w.originalName}: shape ${t.shape} != ${w.shape}`);
    w.write(t);
  }
}

export class CnnClassifier implements Classifier {
  constructor(
    readonly model: tf.Sequential,
    readonly meta: ClassifierMeta,
    readonly name: string,
  ) {}
  get inputShape(): [number, number, number] {
    return this.meta.inputShape;
  }
  get classNames(): string[] {
    return this.meta.classNames;
  }
  predict(x: Tensor4D): Tensor2D {
    return this.model.apply(x, { training: false }) as Tensor2D;
  }
  dispose(): void {
    this.model.dispose();
  }
}

export function saveClassifier(path: string, clf: CnnClassifier, extraMeta: Record<string, unknown> = {}, dtype: WeightsDtype = 'float16'): void {
  saveWeights(path, namedWeights(clf.model), { ...clf.meta, ...extraMeta }, { dtype });
}

export function classifierFromWeights(path: string, name: string): CnnClassifier {
  const { meta, tensors } = loadWeights<ClassifierMeta>(path);
  const model = buildCnn(meta.inputShape, meta.classNames.length, meta.widths);
  try {
    assignWeights(model, tensors);
  } finally {
    tf.dispose(Object.values(tensors));
  }
  return new CnnClassifier(model, meta, name);
}

export class ModelNotFoundError extends Error {
  readonly code = 'UNKNOWN_MODEL';
}

/**
 * Load a shipped classifier: `loadClassifier('fashion-mnist')`, or a variant such as
 * `loadClassifier('fashion-mnist', 'classifier-adv')`, or a path to a weights file (without suffix).
 */
export function loadClassifier(model: string, variant = 'classifier'): CnnClassifier {
  const path = model.includes('/') || model.includes('\\') ? model : join(modelsDir(), model, variant);
  if (!weightsExist(path)) throw new ModelNotFoundError(`no classifier weights at ${path}.json/.bin`);
  return classifierFromWeights(path, `${model}/${variant}`);
}
