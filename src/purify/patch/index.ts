/**
 * Patch purification: a patch is a local, unbounded corruption, so instead of drowning it in noise
 * (diffpure) it is treated as a missing region: localise it from the diffusion model's reconstruction
 * residuals, then reconstruct it by RePaint inpainting.
 *
 *   const { x: clean, mask } = purifyPatch(model, x, { seed });   // mask [N,H,W,1], 1 = inpainted
 */
import type { Tensor4D } from '../../backend/index.js';
import type { DiffusionModel } from '../../models/diffusion-model.js';
import { inpaint, type InpaintOptions } from './inpaint.js';
import { localizePatch, LOCALIZE_DEFAULTS, type FoundPatch, type LocalizeOptions } from './localize.js';

export { boxIoU, boxMask, maskBounds, maskIoU, maskIoUs, randomBox, type Box, type Rect } from './box.js';
export { inpaint, INPAINT_DEFAULTS, type InpaintOptions } from './inpaint.js';
export { anomalyScore, findPatch, localizePatch, LOCALIZE_DEFAULTS, type FoundPatch, type Localization, type LocalizeOptions } from './localize.js';

export interface PatchOptions {
  localize?: LocalizeOptions;
  /** Pixels added around the found square before inpainting (a patch's border must not survive). */
  margin?: number;
  inpaint?: Omit<InpaintOptions, 'seed'>;
  seed?: number;
}

export const PATCH_DEFAULTS = { margin: 1 };

export interface PatchPurified {
  /** Purified images [N,H,W,C] in [0,1]: the input with the masked region inpainted. */
  x: Tensor4D;
  /** 0/1 [N,H,W,1]: the region that was inpainted (the found square grown by `margin`). */
  mask: Tensor4D;
  /** The localiser's square per image (its `detected` flag says whether anything was inpainted). */
  found: FoundPatch[];
}

/**
 * Localise and inpaint. Differentiable in x through the inpainting with the mask held fixed (the mask is
 * thresholded, so it carries no gradient); the caller disposes both tensors.
 */
export function purifyPatch(model: DiffusionModel, x: Tensor4D, opts: PatchOptions = {}): PatchPurified {
  const seed = opts.seed ?? 0;
  const grow = (opts.localize?.grow ?? LOCALIZE_DEFAULTS.grow) + (opts.margin ?? PATCH_DEFAULTS.margin);
  const loc = localizePatch(model, x, { ...opts.localize, grow, seed: opts.localize?.seed ?? seed });
  loc.score.dispose();
  const out = inpaint(model, x, loc.mask, { ...opts.inpaint, seed: (seed + 7919) % 2 ** 31 });
  return { x: out, mask: loc.mask, found: loc.found };
}

/**
 * 'auto': patch purification, then `then` (e.g. diffpure, for the perturbation that is not a patch) on its
 * result. The mask is the patch stage's; the caller disposes both tensors.
 */
export function purifyAuto(model: DiffusionModel, x: Tensor4D, then: (x: Tensor4D) => Tensor4D, opts: PatchOptions = {}): PatchPurified {
  const p = purifyPatch(model, x, opts);
  const out = then(p.x);
  p.x.dispose();
  return { ...p, x: out };
}
