/**
 * Validation accuracy of a Fashion-MNIST classifier after diffpure at t* 300 / 450 / 600 (1,000 validation images, the
 * fixed purification draws purification-aware training validates with), for comparing classifiers behind the purifier.
 * Usage: node --import tsx scripts/purified-val.ts [variant=classifier] [weights path without suffix]
 */
import { initBackend } from '../src/backend/index.js';
import { loadDataset } from '../src/data/index.js';
import { classifierFromWeights } from '../src/models/classifier.js';
import { purifiedAccuracies } from '../src/train/classifier.js';
import { purifyAugmenter } from '../src/train/purify-aug.js';
await initBackend();
const variant = process.argv[2] ?? 'classifier';
const clf = classifierFromWeights(process.argv[3] ?? `models/fashion-mnist/${variant}`, variant);
const p = await purifyAugmenter({ model: 'fashion-mnist', tStars: [300, 450, 600] });
const val = loadDataset('fashion-mnist', 'val');
console.log(variant, JSON.stringify(purifiedAccuracies(clf, p, val, 1000)));
