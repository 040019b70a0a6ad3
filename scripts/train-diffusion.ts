/**
 * Background diffusion training: resumes from runs/<dataset>/diffusion.ckpt and writes the EMA weights
 * to runs/<dataset>/diffusion-ema.{json,bin} every 100 steps. Shipping is a deliberate copy to
 * models/<dataset>/diffusion.* after evaluation (so the shipped, tested weights never change under a
 * running benchmark). Usage: node --import tsx scripts/train-diffusion.ts [dataset] [steps] [decayFrom]
 * (decayFrom: cosine learning-rate decay to 0 from that step to the last)
 */
import { initBackend } from '../src/backend/index.js';
import { trainDiffusion } from '../src/train/diffusion.js';
await initBackend();
const [dataset = 'fashion-mnist', steps = '20000', decayFrom] = process.argv.slice(2);
await trainDiffusion({ dataset: dataset as 'fashion-mnist', out: `runs/${dataset}/diffusion-ema`, checkpoint: `runs/${dataset}/diffusion.ckpt`, steps: Number(steps), batchSize: 64, lr: 1e-3, seed: 1, checkpointEvery: 100, decayFrom: decayFrom === undefined ? undefined : Number(decayFrom) });
