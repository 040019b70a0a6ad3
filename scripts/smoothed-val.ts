/**
 * The smoothed validation score that consistency-regularized training picks its epoch by (ACR and share
 * certified over validation images, 100 noise draws each, alpha 0.01), for any shipped classifier variant, so
 * that runs trained with and without consistency are compared on the same draws.
 *   node --import tsx scripts/smoothed-val.ts mnist classifier-noise0.5 0.5 [count=500]
 */
import { initBackend } from '../src/backend/index.js';
import { loadDataset, type DatasetName } from '../src/data/index.js';
import { loadClassifier } from '../src/models/classifier.js';
import { smoothedValidation } from '../src/train/classifier.js';

const [dataset, variant, sigmaArg, countArg] = process.argv.slice(2);
if (!dataset || !variant || !sigmaArg) throw new Error('usage: smoothed-val.ts <dataset> <variant> <sigma> [count]');
await initBackend();
const clf = loadClassifier(dataset, variant);
const sigma = Number(sigmaArg);
const count = Number(countArg ?? 500);
const r = smoothedValidation(clf, loadDataset(dataset as DatasetName, 'val'), sigma, count);
console.log(`${dataset} ${variant} sigma ${sigma}: ACR ${r.acr.toFixed(3)}, certified ${(100 * r.certified).toFixed(1)}% (${count} validation images, 100 draws, alpha 0.01)`);
