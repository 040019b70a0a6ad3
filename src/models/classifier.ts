/**
 * The small Fashion-MNIST / MNIST CNN: (conv3x3-BN-ReLU) x2, maxpool, (conv3x3-BN-ReLU) x2, maxpool,
 * dense 256-ReLU, dropout, dense -> logits. Weights ship in models/<dataset>/<name>.{json,bin}.
 */
import { join } from 'node:path';
import { tf, type Tensor2D, type Tensor4D } from '../backend/index.js';
import { convBias } from '../backend/conv.js';
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

/**
 * Inference form of a buildCnn model: each conv-BN-ReLU folded into one fused conv (w * gamma / sqrt(var + eps),
 * bias beta - mean * gamma / sqrt(var + eps), ReLU), the dense layers fused with their bias and activation.
 * Same function as `model.apply(x, { training: false })` (to float rounding), without the per-layer
 * batch-norm and activation passes over every activation map: 1.2-1.3x the images/s at batches of 10, 64
 * and 500 on the wasm backend, and under a gradient tape (plain ops there) 1.9x for the input gradient at batch 80
 * (interleaved A/B, 2026-11-29). Undefined when the model is not buildCnn's
 * layer sequence (predict then runs the layers model).
 */
type Folded = { convs: { w: tf.Tensor4D; b: tf.Tensor1D; poolAfter: boolean }[]; dense: { w: tf.Tensor2D; b: tf.Tensor1D; relu: boolean }[] };

function foldCnn(m: tf.Sequential): Folded | undefined {
  const layers = m.layers;
  const kinds = layers.map((l) => l.getClassName());
  const plan = ['Conv2D', 'BatchNormalization', 'ReLU', 'Conv2D', 'BatchNormalization', 'ReLU', 'MaxPooling2D',
    'Conv2D', 'BatchNormalization', 'ReLU', 'Conv2D', 'BatchNormalization', 'ReLU', 'MaxPooling2D', 'Flatten', 'Dense', 'Dropout', 'Dense'];
  if (kinds.join() !== plan.join()) return undefined;
  const cfg = (i: number) => layers[i].getConfig() as Record<string, unknown>;
  for (const i of [0, 3, 7, 10]) {
    const c = cfg(i);
    if (c.useBias || c.padding !== 'same' || String(c.strides) !== '1,1' || String(c.dilationRate) !== '1,1' || (c.activation ?? 'linear') !== 'linear') return undefined;
    const bn = cfg(i + 1);
    if (bn.center === false || bn.scale === false || (Number(bn.axis) !== -1 && Number(bn.axis) !== 3)) return undefined;
    if (cfg(i + 2).maxValue != null) return undefined;
  }
  for (const i of [6, 13]) {
    const c = cfg(i);
    if (String(c.poolSize) !== '2,2' || String(c.strides) !== '2,2' || c.padding !== 'valid') return undefined;
  }
  if (cfg(15).activation !== 'relu' || !cfg(15).useBias || (cfg(17).activation ?? 'linear') !== 'linear' || !cfg(17).useBias) return undefined;
  const convs = [0, 3, 7, 10].map((i) => {
    const [kernel] = layers[i].getWeights();
    const bn = layers[i + 1];
    const byName = (suffix: string) => bn.weights.find((w) => w.originalName.endsWith(suffix))!.read();
    const scale = tf.tidy(() => byName('gamma').div(byName('moving_variance').add(Number(cfg(i + 1).epsilon)).sqrt()));
    const folded = tf.tidy(() => ({ w: kernel.mul(scale) as tf.Tensor4D, b: byName('beta').sub(byName('moving_mean').mul(scale)) as tf.Tensor1D }));
    scale.dispose();
    return { ...folded, poolAfter: i === 3 || i === 10 };
  });
  const dense = [15, 17].map((i) => {
    const [w, b] = layers[i].getWeights();
    return { w: w.clone() as tf.Tensor2D, b: b.clone() as tf.Tensor1D, relu: i === 15 };
  });
  // made inside a caller's tidy (a first predict in an attack), they must outlive it
  for (const t of [...convs.flatMap((c) => [c.w, c.b]), ...dense.flatMap((d) => [d.w, d.b])]) tf.keep(t);
  return { convs, dense };
}

function disposeFolded(f: Folded | undefined): void {
  if (f) tf.dispose([...f.convs.flatMap((c) => [c.w, c.b]), ...f.dense.flatMap((d) => [d.w, d.b])]);
}

export class CnnClassifier implements Classifier {
  private folded: Folded | undefined;
  /** the weights' data ids the folded form was made from: training or assignWeights replaces them */
  private foldedFrom: object[] = [];
  constructor(
    readonly model: tf.Sequential,
    readonly meta: ClassifierMeta,
    readonly name: string,
  ) {
    this.refold();
  }
  get inputShape(): [number, number, number] {
    return this.meta.inputShape;
  }
  get classNames(): string[] {
    return this.meta.classNames;
  }
  private weightIds(): object[] {
    return this.model.weights.map((w) => w.read().dataId);
  }
  private refold(ids = this.weightIds()): void {
    disposeFolded(this.folded);
    this.foldedFrom = ids;
    this.folded = foldCnn(this.model);
  }
  predict(x: Tensor4D): Tensor2D {
    const ids = this.weightIds();
    if (ids.length !== this.foldedFrom.length || ids.some((id, i) => id !== this.foldedFrom[i])) this.refold(ids);
    const f = this.folded;
    if (!f) return this.model.apply(x, { training: false }) as Tensor2D;
    // fused convs, or plain ops under a gradient tape (attacks want d/dx only): see src/backend/conv.ts
    return tf.tidy(() => {
      let h: Tensor4D = x;
      for (const c of f.convs) {
        h = convBias(h, c.w, c.b, 1, 'relu');
        if (c.poolAfter) h = tf.maxPool(h, 2, 2, 'valid');
      }
      let z = h.reshape([h.shape[0], -1]) as Tensor2D;
      for (const d of f.dense) z = tf.fused.matMul({ a: z, b: d.w, bias: d.b, activation: d.relu ? 'relu' : 'linear' }) as Tensor2D;
      return z;
    });
  }
  dispose(): void {
    disposeFolded(this.folded);
    this.folded = undefined;
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
