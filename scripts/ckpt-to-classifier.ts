/**
 * A classifier's rolling checkpoint (its last finished epoch, batch norm already recalibrated) written out as a
 * weights file next to the epoch the trainer kept, so that the last epoch can be certified too. The trainer keeps
 * the epoch of best validation score; for smoothed classifiers that score is a 100-draw ACR proxy, which cannot see
 * radii above ~1.7 sigma, so a full validation certification may prefer another epoch (session 31: SmoothAdv at eps 2
 * kept its first, eps-warm-up epoch).
 *   node --import tsx scripts/ckpt-to-classifier.ts <checkpoint path> <kept weights path> <out path> [uint8|float16|float32]
 * (paths without .json/.bin). Meta: the kept file's, with the checkpoint's epoch; that epoch's validation figures are in
 * the training log, not here.
 */
import { loadWeights, saveWeights, type WeightsDtype } from '../src/models/weights.js';
import { loadCheckpointModel } from '../src/train/checkpoint.js';
import { initBackend, tf } from '../src/backend/index.js';

const [ckpt, kept, out, dtype = 'uint8'] = process.argv.slice(2);
if (!ckpt || !kept || !out || !['uint8', 'float16', 'float32'].includes(dtype)) {
  console.error('usage: ckpt-to-classifier.ts <checkpoint> <kept weights> <out> [uint8|float16|float32]');
  process.exit(2);
}
await initBackend();
const { model, state } = loadCheckpointModel(ckpt);
if (state.stepInEpoch) throw new Error(`${ckpt}: a mid-epoch checkpoint (epoch ${state.epoch + 1}, step ${String(state.stepInEpoch)}); wait for the epoch to end`);
const k = loadWeights<Record<string, unknown>>(kept);
for (const name of Object.keys(k.tensors)) if (!model[name]) throw new Error(`${ckpt} lacks ${name}`);
const { valAcc: _v, smoothedVal: _s, robustValAcc: _r, purifiedValAcc: _p, ...meta } = k.meta;
saveWeights(out, model, { ...meta, epoch: state.epoch, fromCheckpoint: ckpt }, { dtype: dtype as WeightsDtype });
tf.dispose([...Object.values(model), ...Object.values(k.tensors)]);
console.log(`${out}: epoch ${state.epoch} of ${ckpt} (${Object.keys(model).length} tensors, ${dtype}); the kept file ${kept} is epoch ${String(k.meta.epoch)}`);
