/**
 * A trained diffusion model = the process (GaussianDiffusion) + a network (U-Net EMA weights).
 * `eps(xt, t)` is the noise predictor the samplers, purifier and certification use.
 */
import { join } from 'node:path';
import { tf, type Tensor1D, type Tensor4D } from '../backend/index.js';
import { GaussianDiffusion, type EpsModel } from '../diffusion/gaussian-diffusion.js';
import { loadWeights, saveWeights, weightsExist } from './weights.js';
import { DEFAULT_UNET, unetForward, type Params, type UNetConfig } from './unet.js';
import { modelsDir } from './paths.js';
import { ModelNotFoundError } from './classifier.js';

export interface DiffusionMeta {
  kind: 'ddpm-unet';
  dataset: string;
  T: number;
  schedule: 'cosine';
  unet: UNetConfig;
  [k: string]: unknown;
}

export class DiffusionModel {
  readonly diffusion: GaussianDiffusion;
  readonly eps: EpsModel;
  constructor(
    readonly params: Params,
    readonly meta: DiffusionMeta,
  ) {
    this.diffusion = new GaussianDiffusion(meta.T);
    this.eps = (xt: Tensor4D, t: Tensor1D) => unetForward(this.params, this.meta.unet, xt, t);
  }
  dispose(): void {
    tf.dispose(Object.values(this.params));
  }
}

export function saveDiffusion(path: string, params: Params, meta: DiffusionMeta, float16 = true): void {
  saveWeights(path, params, meta, { float16 });
}

export function loadDiffusion(model: string, variant = 'diffusion'): DiffusionModel {
  const path = model.includes('/') || model.includes('\\') ? model : join(modelsDir(), model, variant);
  if (!weightsExist(path)) throw new ModelNotFoundError(`no diffusion weights at ${path}.json/.bin`);
  const { meta, tensors } = loadWeights<DiffusionMeta>(path);
  return new DiffusionModel(tensors, { ...meta, unet: meta.unet ?? DEFAULT_UNET });
}
