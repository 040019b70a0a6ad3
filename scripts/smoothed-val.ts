/**
 * The smoothed validation score that consistency-regularized and denoised-smoothing training pick their epoch by
 * (ACR and share certified over validation images, 100 noise draws each, alpha 0.01), for any classifier, so that
 * runs trained differently are compared on the same draws.
 *   node --import tsx scripts/smoothed-val.ts mnist classifier-noise0.5 0.5 [count=500]
 *   node --import tsx scripts/smoothed-val.ts fashion-mnist classifier 0.5 500 --dds        (denoised smoothing:
 *     the diffusion model's one-shot denoising, then the classifier; a variant may be a weights path)
 */
import { initBackend, tf, type Tensor4D } from '../src/backend/index.js';
import { loadDataset, type DatasetName } from '../src/data/index.js';
import { loadClassifier } from '../src/models/classifier.js';
import { smoothedValidation } from '../src/train/classifier.js';
import { ddsAugmenter } from '../src/train/purify-aug.js';

const args = process.argv.slice(2);
const dds = args.includes('--dds');
const [dataset, variant, sigmaArg, countArg] = args.filter((a) => a !== '--dds');
if (!dataset || !variant || !sigmaArg) throw new Error('usage: smoothed-val.ts <dataset> <variant|path> <sigma> [count] [--dds]');
await initBackend();
const clf = variant.includes('/') ? loadClassifier(variant) : loadClassifier(dataset, variant);
const sigma = Number(sigmaArg);
const count = Number(countArg ?? 500);
const denoise = dds ? (await ddsAugmenter({ model: dataset, sigma })).smoothing?.denoise : undefined;
const predictor = denoise ? { predict: (x: Tensor4D) => tf.tidy(() => clf.predict(denoise(x))) } : clf;
const r = await smoothedValidation(predictor, loadDataset(dataset as DatasetName, 'val'), sigma, count);
console.log(`${dataset} ${variant}${dds ? ' after one-shot denoising' : ''} sigma ${sigma}: ACR ${r.acr.toFixed(3)}, certified ${(100 * r.certified).toFixed(1)}% (${count} validation images, 100 draws, alpha 0.01)`);
