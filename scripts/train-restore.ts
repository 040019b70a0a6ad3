/**
 * Train the restoration model in the background (resumes from runs/<dataset>/restore.ckpt):
 *   nohup node --import tsx scripts/train-restore.ts fashion-mnist 6000 3000 >> runs/fashion-mnist/restore.log 2>&1 &
 * Arguments: dataset, total steps, and the step from which the learning rate decays to 0 (cosine; optional).
 * Starts from models/<dataset>/diffusion (a copy; that file is not modified) and writes models/<dataset>/restore.{json,bin}.
 */
import { initBackend } from '../src/backend/index.js';
import { trainRestore } from '../src/train/restore.js';
await initBackend();
const [dataset = 'fashion-mnist', steps = '10000', decayFrom] = process.argv.slice(2);
await trainRestore({
  dataset: dataset as 'fashion-mnist', init: `models/${dataset}/diffusion`, out: `models/${dataset}/restore`, checkpoint: `runs/${dataset}/restore.ckpt`,
  steps: Number(steps), batchSize: 64, lr: 5e-4, seed: 1, checkpointEvery: 100, validateEvery: 500,
  decayFrom: decayFrom === undefined ? undefined : Number(decayFrom),
});
