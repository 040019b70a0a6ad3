import { initBackend } from '../src/backend/index.js';
import { trainClassifier } from '../src/train/classifier.js';
await initBackend();
const [dataset = 'fashion-mnist', epochs = '15'] = process.argv.slice(2);
await trainClassifier({ dataset: dataset as 'fashion-mnist', out: `models/${dataset}/classifier`, checkpoint: `runs/${dataset}/classifier.ckpt`, epochs: Number(epochs), batchSize: 128, lr: 2e-3, seed: 1 });
