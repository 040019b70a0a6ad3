/**
 * Experiment (issue #7, goal 1): a short restoration-heavy fine-tune of the shipped restoration model, to see
 * whether more training moves severity-3 accuracy on validation images. Writes only under
 * runs/fashion-mnist/experiments/restore-ft/ (the shipped weights are not touched); resumes from its checkpoint.
 *   nohup node --import tsx scripts/exp-restore-ft.ts 600 >> runs/fashion-mnist/experiments/restore-ft.log 2>&1 &
 * Then compare (validation images 0-199, every corruption at severity 3, cold design, one pass) with the shipped
 * weights' first-pass column in runs/fashion-mnist/experiments/restore-passes.md:
 *   RESTORE_WEIGHTS=runs/fashion-mnist/experiments/restore-ft/restore node --import tsx scripts/exp-restore-passes.ts 200 1
 */
import { mkdirSync } from 'node:fs';
import { initBackend } from '../src/backend/index.js';
import { trainRestore } from '../src/train/restore.js';
await initBackend();
const steps = Number(process.argv[2] ?? 600);
const dir = 'runs/fashion-mnist/experiments/restore-ft';
mkdirSync(dir, { recursive: true });
await trainRestore({
  dataset: 'fashion-mnist', init: 'models/fashion-mnist/restore', out: `${dir}/restore`, checkpoint: `${dir}/restore.ckpt`,
  steps, batchSize: 64, lr: 2e-4, warmup: 50, decayFrom: Math.floor(steps / 3), emaDecay: 0.99, seed: 2,
  checkpointEvery: 100, validateEvery: 0, restoreFraction: 0.75,
});
