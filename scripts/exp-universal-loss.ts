/**
 * Experiment (issue #6): is the benchmark's universal patch (untargeted CE, Brown et al.'s training loop) as
 * strong as a universal patch gets against the undefended classifier, or would another objective do better?
 * Trains 6x6 patches against the plain classifier with untargeted CE, untargeted margin, and targeted CE towards
 * each class, then pastes each at random places on 1,000 training-split images (the ones an attacker would pick
 * the target by; training may have drawn some of them) and on test images 0-199 (as the benchmark does) and
 * prints accuracy. Usage: node --import tsx scripts/exp-universal-loss.ts [steps 300] [batch 32]
 */
import { tf, type Tensor4D } from '../src/backend/index.js';
import { loadDataset, subset, imageSize } from '../src/data/index.js';
import { loadClassifier } from '../src/purify/index.js';
import { pastePatch } from '../attacks/patch.js';
import { randomBox, type Box } from '../src/purify/patch/box.js';
import { mulberry32 } from '../src/util/rng.js';

const steps = Number(process.argv[2] ?? 300);
const bs = Number(process.argv[3] ?? 32);
const size = 6;
const clf = await loadClassifier('fashion-mnist');
const train = loadDataset('fashion-mnist', 'train');
const test = subset(loadDataset('fashion-mnist', 'test'), Array.from({ length: 200 }, (_, i) => i));
const [h, w, c] = [28, 28, 1];
const px = imageSize(train);

type Obj = { name: string; target?: number; loss: 'ce' | 'margin' };
function trainPatch(o: Obj, seed: number): tf.Tensor3D {
  const rng = mulberry32(seed);
  let patch = tf.randomUniform([size, size, c], 0, 1, 'float32', seed) as tf.Tensor3D;
  for (let s = 0; s < steps; s++) {
    const pick = Array.from({ length: bs }, () => Math.floor(rng() * train.count));
    const buf = new Float32Array(bs * px);
    pick.forEach((j, i) => buf.set(train.images.subarray(j * px, (j + 1) * px), i * px));
    const boxes = pick.map(() => randomBox(Math.max(1, Math.round(size * (0.75 + rng() * 0.5))), h, w, rng));
    const next = tf.tidy(() => {
      const x = tf.tensor4d(buf, [bs, h, w, c]);
      const y = Int32Array.from(pick, (j) => train.labels[j]);
      const f = (p: tf.Tensor) => {
        const z = clf.predict(pastePatch(x, p as tf.Tensor3D, boxes).x) as tf.Tensor2D;
        if (o.target !== undefined) return tf.neg(tf.losses.softmaxCrossEntropy(tf.oneHot(tf.fill([bs], o.target, 'int32') as tf.Tensor1D, 10), z));
        const oh = tf.oneHot(tf.tensor1d(y, 'int32'), 10);
        if (o.loss === 'ce') return tf.losses.softmaxCrossEntropy(oh, z);
        const zy = tf.sum(tf.mul(z, oh), 1);
        const zo = tf.max(tf.sub(z, tf.mul(oh, 1e4)), 1);
        return tf.mean(tf.relu(tf.add(tf.sub(zy, zo), 5))); // margin, capped below once misclassified by 5
      };
      // margin objective: minimise; others maximise
      const g = tf.grad(f)(patch);
      const dir = o.loss === 'margin' && o.target === undefined ? tf.neg(g) : g;
      return tf.clipByValue(tf.add(patch, tf.mul(1 / 32, tf.sign(dir))), 0, 1) as tf.Tensor3D;
    });
    patch.dispose();
    patch = next;
  }
  return patch;
}

function accuracy(patch: tf.Tensor3D, ds: typeof test, seed: number): number {
  const rng = mulberry32(seed);
  return tf.tidy(() => {
    const x = tf.tensor4d(ds.images, [ds.count, h, w, c]) as Tensor4D;
    const boxes: Box[] = Array.from({ length: ds.count }, () => randomBox(size, h, w, rng));
    const pred = (clf.predict(pastePatch(x, patch, boxes).x) as tf.Tensor2D).argMax(-1).dataSync();
    let ok = 0;
    for (let i = 0; i < ds.count; i++) ok += Number(pred[i] === ds.labels[i]);
    return ok / ds.count;
  });
}

const valIdx = Array.from({ length: 1000 }, (_, i) => 50_000 + i);
const val = subset(train, valIdx);
const objs: Obj[] = [{ name: 'untargeted ce', loss: 'ce' }, { name: 'untargeted margin', loss: 'margin' }, ...Array.from({ length: 10 }, (_, t) => ({ name: `targeted -> ${t}`, target: t, loss: 'ce' as const }))];
console.log(`| objective | train-image acc (1,000) | test acc (0-199) |\n|---|---:|---:|`);
for (const o of objs) {
  const t0 = performance.now();
  const p = trainPatch(o, 7);
  console.log(`| ${o.name} | ${(100 * accuracy(p, val, 3)).toFixed(1)}% | ${(100 * accuracy(p, test, 5)).toFixed(1)}% | (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  p.dispose();
}
