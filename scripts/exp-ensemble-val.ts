/**
 * Experiment (issue #5): does averaging the softmax of several base classifiers behind one denoising
 * (Horváth et al. 2022, "Boosting randomized smoothing with variance reduced classifiers") raise the smoothed
 * classifier's validation ACR over the best single one? The same proxy as the trainers' (500 validation images,
 * 100 noise draws each with the trainers' fixed seeds, Clopper-Pearson at alpha 0.01); the noisy image is
 * denoised once per draw and every member sees the same draws. Members named `noisy:<path>` see the noisy image
 * itself (Cohen-style classifiers), the others its one-shot denoising.
 *
 *   node --import tsx scripts/exp-ensemble-val.ts fashion-mnist 1 "a=runs/.../classifier-dds-cons1" "b=noisy:runs/.../classifier-consistency1" ... -- a a+b ...
 */
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadDataset, type DatasetName } from '../src/data/index.js';
import { loadClassifier, loadDiffusionModel } from '../src/purify/index.js';
import { oneShotDenoiser } from '../certify/bases.js';
import { smoothedRadius } from '../src/train/classifier.js';

const DRAWS = 100;
const [dataset, sigmaArg, ...rest] = process.argv.slice(2);
const sep = rest.indexOf('--');
const memberArgs = rest.slice(0, sep);
const combos = rest.slice(sep + 1);
const sigma = Number(sigmaArg);
const count = Number(process.env.COUNT ?? 500);

const members: Record<string, { noisy: boolean; predict: (x: Tensor4D) => tf.Tensor }> = {};
for (const m of memberArgs) {
  const [name, spec] = m.split('=');
  const noisy = spec.startsWith('noisy:');
  const c = await loadClassifier(noisy ? spec.slice(6) : spec);
  members[name] = { noisy, predict: (x) => c.predict(x) };
}
const dm = await loadDiffusionModel(dataset);
// the identity "classifier": the base returns the denoised images themselves
const denoise = oneShotDenoiser(dm.diffusion, dm.eps, { sigma });
const val = loadDataset(dataset as DatasetName, 'val');
const n = Math.min(count, val.count);
const hits: Record<string, number[]> = Object.fromEntries(combos.map((c) => [c, []]));
const t0 = Date.now();
for (let s = 0; s < n; s += 20) {
  const idx = Array.from({ length: Math.min(20, n - s) }, (_, i) => s + i);
  const { x, y } = batch(val, idx);
  const labels = tf.tile(y, [DRAWS]);
  const probs = tf.tidy(() => {
    const xs = tf.tile(x, [DRAWS, 1, 1, 1]);
    const noisy = xs.add(tf.randomNormal(xs.shape, 0, sigma, 'float32', 0x61637200 + s)) as Tensor4D;
    const den = denoise(noisy) as Tensor4D;
    return Object.fromEntries(Object.entries(members).map(([k, m]) => [k, tf.keep(tf.softmax(m.predict(m.noisy ? noisy : den) as tf.Tensor2D))]));
  });
  for (const c of combos) {
    const counts = tf.tidy(() => {
      const parts = c.split('+').map((k) => probs[k]);
      const p = parts.reduce((a, b) => a.add(b));
      return p.argMax(-1).equal(labels).reshape([DRAWS, idx.length]).cast('int32').sum(0).dataSync();
    });
    hits[c].push(...counts);
  }
  tf.dispose([...Object.values(probs), x, y, labels]);
  process.stderr.write(`\r${s + idx.length}/${n} ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
process.stderr.write('\n');
console.log(`${dataset} sigma ${sigma}, ${n} validation images x ${DRAWS} draws (alpha 0.01)\n`);
console.log('| members | ACR | certified |\n|---|---:|---:|');
for (const c of combos) {
  let acr = 0;
  let cert = 0;
  for (const k of hits[c]) {
    const r = smoothedRadius(k, sigma);
    if (r !== undefined) {
      cert++;
      acr += r;
    }
  }
  console.log(`| ${c} | ${(acr / n).toFixed(3)} | ${((100 * cert) / n).toFixed(1)}% |`);
}
