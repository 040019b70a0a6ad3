/**
 * Experiment (issue #7, validation images only): does restoring from a scaled level-net estimate
 * (level x k) help the cold design? Severity 3, every corruption, validation images 0..N-1.
 *   node --import tsx scripts/exp-level-scale.ts [count=100] [k=0.8,1,1.25,1.5]
 */
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadDataset, take } from '../src/data/index.js';
import { degradationsFor } from '../src/degradations/index.js';
import { fromModelScale, toModelScale } from '../src/diffusion/gaussian-diffusion.js';
import { levelSteps, restoreCold } from '../src/diffusion/restoration.js';
import { predictLevels } from '../src/models/restore-model.js';
import { loadClassifier, loadDiffusionModel } from '../src/purify/index.js';
import { benchSeed, degrade } from '../src/bench/corruptions.js';

const count = Number(process.argv[2] ?? 100);
const ks = (process.argv[3] ?? '0.8,1,1.25,1.5').split(',').map(Number);
const data = take(loadDataset('fashion-mnist', 'val'), count);
const model = await loadDiffusionModel('models/fashion-mnist/restore');
const clf = await loadClassifier('fashion-mnist');
const { x, y } = batch(data, Array.from({ length: count }, (_, i) => i));
const conds = [...degradationsFor(1), 'mix-2', 'mix-3'];
const acc: Record<string, number[]> = {};
for (const c of conds) {
  const seed = benchSeed(99, c, 3);
  const bad = await degrade(x, c, 3, seed);
  const lv = predictLevels(model, bad);
  acc[c] = ks.map((k) => {
    const t = levelSteps(model.diffusion, Array.from(lv, (v) => v * k));
    return tf.tidy(() => {
      const z = restoreCold(model.diffusion, model.eps, toModelScale(bad), t, 5);
      const out = fromModelScale(z);
      return clf.predict(out).argMax(-1).equal(y).mean().dataSync()[0];
    });
  });
  bad.dispose();
  process.stdout.write(`${c.padEnd(20)} ${acc[c].map((a) => (100 * a).toFixed(1).padStart(6)).join(' ')}\n`);
}
const mean = ks.map((_, i) => conds.reduce((s, c) => s + acc[c][i], 0) / conds.length);
process.stdout.write(`${'mean'.padEnd(20)} ${mean.map((a) => (100 * a).toFixed(1).padStart(6)).join(' ')}   (k = ${ks.join(', ')})\n`);
