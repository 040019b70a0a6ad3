/**
 * Validation accuracy of a Fashion-MNIST classifier behind `mode: 'restore'`: on the first 1,000 validation images
 * restored after fixed random degradation sequences, and restored clean, exactly as `train classifier --restore-aug`
 * validates each epoch; for comparing the shipped classifier with a restore-aware one on the same images.
 * Usage: node --import tsx scripts/restored-val.ts [weights path without suffix = models/fashion-mnist/classifier]
 */
import { initBackend } from '../src/backend/index.js';
import { loadDataset } from '../src/data/index.js';
import { classifierFromWeights } from '../src/models/classifier.js';
import { accuracy, purifiedAccuracies } from '../src/train/classifier.js';
import { restoreAugmenter } from '../src/train/purify-aug.js';
await initBackend();
const path = process.argv[2] ?? 'models/fashion-mnist/classifier';
const clf = classifierFromWeights(path, 'classifier');
const aug = await restoreAugmenter({ model: 'fashion-mnist' });
const val = loadDataset('fashion-mnist', 'val');
const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
const restored = purifiedAccuracies(clf, aug, val, 1000);
console.log(`${path}: val acc ${pct(accuracy((x) => clf.predict(x), val))} (${val.count} images); ` +
  Object.entries(restored).map(([k, v]) => `${k} ${pct(v)}`).join(', ') + ' (1000 images)');
clf.dispose();
