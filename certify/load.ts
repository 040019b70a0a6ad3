/**
 * The built-in base classifiers on a data set's shipped models (models/<dataset>/), named by plain data
 * (a BaseSpec) so that every worker thread can build the same base for itself.
 *  - dds: denoised smoothing, the diffusion model (diffusion.json/.bin) then the ordinary classifier;
 *  - noisy: Cohen et al., the classifier trained with Gaussian noise at this sigma (classifier-noise<sigma>)
 *    when there is one, else the ordinary classifier (with a note saying so);
 *  - consistency: the classifier trained with Gaussian noise and consistency regularization (Jeong & Shin
 *    2020) at this sigma (classifier-consistency<sigma>; required);
 *  - dds-ft: denoised smoothing with a classifier fine-tuned on the diffusion model's one-shot denoisings at this
 *    sigma (classifier-dds<sigma>; required), as Carlini et al. 2023 and Salman et al. 2020 fine-tune theirs;
 *  - dds-cons: the same fine-tuning with Jeong & Shin's consistency regularization over separately noised and
 *    denoised copies of each image, a second stage on the dds-ft classifier (classifier-dds-cons<sigma>; required).
 */
import { join } from 'node:path';
import type { Tensor4D } from '../src/backend/index.js';
import type { DatasetName } from '../src/data/index.js';
import { ModelNotFoundError } from '../src/models/classifier.js';
import { modelsDir } from '../src/models/paths.js';
import { weightsExist } from '../src/models/weights.js';
import { loadClassifier, loadDiffusionModel } from '../src/purify/index.js';
import type { Classifier } from '../src/types.js';
import { denoisedBase, noisyBase } from './bases.js';
import type { BaseClassifier } from './core.js';

export const BASE_KINDS = ['dds', 'noisy', 'consistency', 'dds-ft', 'dds-cons'] as const;
export type BaseKind = (typeof BASE_KINDS)[number];

/** A built-in base classifier on a data set's shipped models (structured-clonable). */
export interface BaseSpec {
  kind: BaseKind;
  dataset: DatasetName;
}

export interface BaseModels {
  /** classifier variant under models/<dataset>/ */
  classifier: string;
  /** whether the diffusion model is used */
  diffusion: boolean;
  /** a remark for the user (the noisy base fell back to the ordinary classifier) */
  note?: string;
}

export function isBaseSpec(b: unknown): b is BaseSpec {
  return typeof b === 'object' && b !== null && BASE_KINDS.includes((b as BaseSpec).kind);
}

const trainHint = (dataset: string, what: 'classifier' | 'diffusion') => `advpurify train ${what} --dataset ${dataset}`;

/**
 * The weights `spec` uses at `sigma`, checked on disk only (no tfjs): throws ModelNotFoundError naming the
 * missing files and the command that trains them.
 */
export function baseModels(spec: BaseSpec, sigma: number): BaseModels {
  const dir = join(modelsDir(), spec.dataset);
  const need = (variant: string, what: 'classifier' | 'diffusion') => {
    if (!weightsExist(join(dir, variant))) {
      throw new ModelNotFoundError(`no ${spec.dataset} ${what} at ${join(dir, variant)}.json/.bin (needed by --base ${spec.kind}); train it with \`${trainHint(spec.dataset, what)}\``);
    }
  };
  if (spec.kind === 'dds') {
    need('diffusion', 'diffusion');
    need('classifier', 'classifier');
    return { classifier: 'classifier', diffusion: true };
  }
  if (spec.kind === 'dds-ft' || spec.kind === 'dds-cons') {
    const cons = spec.kind === 'dds-cons';
    const variant = `classifier-dds${cons ? '-cons' : ''}${sigma}`;
    need('diffusion', 'diffusion');
    if (!weightsExist(join(dir, variant))) {
      throw new ModelNotFoundError(`no ${spec.dataset} classifier at ${join(dir, variant)}.json/.bin (needed by --base ${spec.kind} at sigma ${sigma}); train it with \`${trainHint(spec.dataset, 'classifier')} --purify-sigma ${sigma}${cons ? ` --consistency 5 --init models/${spec.dataset}/classifier-dds${sigma}` : ` --init models/${spec.dataset}/classifier`} --variant ${variant}\``);
    }
    return { classifier: variant, diffusion: true };
  }
  if (spec.kind === 'consistency') {
    const variant = `classifier-consistency${sigma}`;
    if (!weightsExist(join(dir, variant))) {
      throw new ModelNotFoundError(`no ${spec.dataset} classifier at ${join(dir, variant)}.json/.bin (needed by --base consistency at sigma ${sigma}); train it with \`${trainHint(spec.dataset, 'classifier')} --noise-sigma ${sigma} --consistency 5 --variant ${variant}\``);
    }
    return { classifier: variant, diffusion: false };
  }
  const noisy = `classifier-noise${sigma}`;
  if (weightsExist(join(dir, noisy))) return { classifier: noisy, diffusion: false };
  need('classifier', 'classifier');
  return {
    classifier: 'classifier',
    diffusion: false,
    note: `no ${noisy} for ${spec.dataset}; the noisy base at sigma ${sigma} uses the ordinary classifier (train one with \`${trainHint(spec.dataset, 'classifier')} --noise-sigma ${sigma} --variant ${noisy}\`)`,
  };
}

const classifiers = new Map<string, Promise<Classifier>>();

/** A classifier loaded once per thread. */
function classifier(dataset: DatasetName, variant: string): Promise<Classifier> {
  const key = `${dataset}/${variant}`;
  let c = classifiers.get(key);
  if (!c) {
    c = loadClassifier(dataset, variant);
    classifiers.set(key, c);
  }
  return c;
}

/** The base classifier `spec` at noise level sigma, its models loaded once per thread. */
export async function loadBase(spec: BaseSpec, sigma: number): Promise<BaseClassifier> {
  const m = baseModels(spec, sigma);
  const clf = await classifier(spec.dataset, m.classifier);
  const logits = (x: Tensor4D) => clf.predict(x);
  if (!m.diffusion) return noisyBase(logits);
  const dm = await loadDiffusionModel(spec.dataset);
  return denoisedBase(dm.diffusion, dm.eps, logits, { sigma });
}
