/**
 * `mode: 'restore'`: blind restoration of an image damaged in an unknown way (noise, blur, JPEG,
 * pixelation, banding, patches, several at once) by the restoration model (src/models/restore-model.ts,
 * trained by src/train/restore.ts). The level net estimates how damaged each image is; the U-Net
 * restores from that level (the process: src/diffusion/restoration.ts):
 *   'cold' (design a, default): cold-diffusion steps (Bansal et al. Algorithm 2) from the estimated level
 *          to 0; deterministic, `steps` network passes;
 *   'x0'   (design b): one x0 prediction at the estimated level, then the purifier's diffpure pass
 *          (tStar, steps), which keeps diffpure's randomness against adaptive attacks.
 * The default was chosen on validation images (scripts/restore-val-table.ts).
 * An image the level net judges clean is restored at t = 1, which changes it very little.
 */
import type { Tensor4D } from '../backend/index.js';
import { fromModelScale, toModelScale } from '../diffusion/gaussian-diffusion.js';
import { levelSteps, restoreCold, restoreX0 } from '../diffusion/restoration.js';
import type { DiffusionModel } from '../models/diffusion-model.js';
import { isRestoreModel, predictLevels } from '../models/restore-model.js';
import { PurifyError } from './errors.js';
import type { Restorer } from './options.js';

export interface RestoreOptions {
  restorer: Restorer;
  /** 'cold': number of restoration steps. */
  steps: number;
  /** Pixel-scale level (RMS error) to restore from, instead of the level net's estimate. */
  sigma?: number;
}

/** The step t each image is restored from: the level net's estimate, or the given `sigma`. */
export function restoreSteps(model: DiffusionModel, x: Tensor4D, sigma?: number): Int32Array {
  const levels = sigma !== undefined ? new Float32Array(x.shape[0]).fill(2 * sigma) : predictLevels(model, x);
  return levelSteps(model.diffusion, levels);
}

/** Restore x [N,H,W,C] in [0,1]; `diffpure` is the purifier's own pass (design 'x0'). Differentiable in x; caller disposes. */
export function purifyRestore(model: DiffusionModel, x: Tensor4D, o: RestoreOptions, diffpure: (y: Tensor4D) => Tensor4D): Tensor4D {
  if (!isRestoreModel(model)) {
    throw new PurifyError('UNKNOWN_MODEL', "mode 'restore' needs a restoration model (restore.{json,bin}, from `advpurify train restore`); this model has no level net", 'mode');
  }
  const d = model.diffusion;
  const t = restoreSteps(model, x, o.sigma);
  const y = toModelScale(x);
  const z = o.restorer === 'cold' ? restoreCold(d, model.eps, y, t, o.steps) : restoreX0(d, model.eps, y, t);
  y.dispose();
  const restored = fromModelScale(z);
  z.dispose();
  if (o.restorer === 'cold') return restored;
  const out = diffpure(restored);
  restored.dispose();
  return out;
}
