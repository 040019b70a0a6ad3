/**
 * Experiment (issue #7, validation images only): does a second (third) cold restoration pass, each from a
 * fresh level estimate of the previous pass's output, help? Severity 3, every corruption, plus the clean
 * images (accuracy, PSNR to the clean image); validation images 0..N-1.
 *   node --import tsx scripts/exp-restore-passes.ts [count=200] [passes=3]   (RESTORE_WEIGHTS=<prefix>: other restoration weights)
 */
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadDataset, take } from '../src/data/index.js';
import { degradationsFor } from '../src/degradations/index.js';
import { fromModelScale, toModelScale } from '../src/diffusion/gaussian-diffusion.js';
import { levelSteps, restoreCold } from '../src/diffusion/restoration.js';
import { predictLevels } from '../src/models/restore-model.js';
import { loadClassifier, loadDiffusionModel } from '../src/purify/index.js';
import { benchSeed, degrade } from '../src/bench/corruptions.js';

const count = Number(process.argv[2] ?? 200);
const passes = Number(process.argv[3] ?? 3);
const data = take(loadDataset('fashion-mnist', 'val'), count);
const model = await loadDiffusionModel(process.env.RESTORE_WEIGHTS ?? 'models/fashion-mnist/restore'); // other weights: RESTORE_WEIGHTS=<path prefix>
const clf = await loadClassifier('fashion-mnist');
const { x, y } = batch(data, Array.from({ length: count }, (_, i) => i));
const conds = ['clean', ...degradationsFor(1), 'mix-2', 'mix-3'];
const acc: Record<string, number[]> = {};
const psnr: Record<string, number[]> = {};
const restoreOnce = (img: Tensor4D): Tensor4D => {
  const t = levelSteps(model.diffusion, Array.from(predictLevels(model, img)));
  return tf.tidy(() => fromModelScale(restoreCold(model.diffusion, model.eps, toModelScale(img), t, 5)) as Tensor4D);
};
for (const c of conds) {
  let cur = c === 'clean' ? tf.clone(x) : await degrade(x, c, 3, benchSeed(99, c, 3));
  acc[c] = [];
  psnr[c] = [];
  for (let p = 0; p < passes; p++) {
    const next = restoreOnce(cur);
    cur.dispose();
    cur = next;
    const [a, q] = tf.tidy(() => {
      const mse = cur.sub(x).square().mean([1, 2, 3]).maximum(1e-10);
      return [clf.predict(cur).argMax(-1).equal(y).mean().dataSync()[0], mse.log().mul(-10 / Math.LN10).mean().dataSync()[0]];
    });
    acc[c].push(a);
    psnr[c].push(q);
  }
  cur.dispose();
  process.stdout.write(`${c.padEnd(20)} ${acc[c].map((a) => (100 * a).toFixed(1).padStart(6)).join(' ')}   PSNR ${psnr[c].map((v) => v.toFixed(2)).join(' ')}\n`);
}
const corr = conds.filter((c) => c !== 'clean');
const mean = acc[corr[0]].map((_, i) => corr.reduce((s, c) => s + acc[c][i], 0) / corr.length);
process.stdout.write(`${'mean (severity 3)'.padEnd(20)} ${mean.map((a) => (100 * a).toFixed(1).padStart(6)).join(' ')}   (passes 1..${passes})\n`);
