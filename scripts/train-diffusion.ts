import { initBackend } from '../src/backend/index.js';
import { trainDiffusion } from '../src/train/diffusion.js';
await initBackend();
const [dataset = 'fashion-mnist', steps = '20000'] = process.argv.slice(2);
await trainDiffusion({ dataset: dataset as 'fashion-mnist', out: `models/${dataset}/diffusion`, checkpoint: `runs/${dataset}/diffusion.ckpt`, steps: Number(steps), batchSize: 64, lr: 1e-3, seed: 1, checkpointEvery: 100 });
