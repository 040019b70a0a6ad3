/**
 * The public purification API.
 *
 *   const clean = await purify(pngBuffer);                       // Buffer -> PNG Buffer; Tensor -> Tensor
 *   const p = await createPurifier({ model: 'fashion-mnist', mode: 'diffpure', tStar, steps, seed });
 *   const y = p.purify(x);                                       // differentiable tf ops
 *   const png = await p.purifyImage(buf);
 *   const clf = await loadClassifier('fashion-mnist');           // clf.predict(x) -> logits
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tf, initBackend, type Tensor2D, type Tensor4D } from '../backend/index.js';
import { loadDiffusion, type DiffusionModel } from '../models/diffusion-model.js';
import { loadClassifier as loadCnn, type CnnClassifier } from '../models/classifier.js';
import { modelsDir } from '../models/paths.js';
import { isRestoreModel, restoreWeightsPath } from '../models/restore-model.js';
import { weightsExist } from '../models/weights.js';
import type { Classifier } from '../types.js';
import { PurifyError } from './errors.js';
import { decodeImage, encodePng, type Fit } from './image.js';
import { Purifier, type CallOptions } from './purifier.js';
import { resolveOptions, type PurifyOptions } from './options.js';

export { PurifyError } from './errors.js';
export type { PurifyErrorCode } from './errors.js';
export { MAX_PASS, Purifier } from './purifier.js';
export { DEFAULTS, LIMITS, MODES, resolveOptions } from './options.js';
export type { Mode, PurifyOptions, Restorer, Sampler } from './options.js';
export { decodeImage, encodeMaskPng, encodePng, toOriginalRect } from './image.js';
export { maskBounds, type Rect } from './patch/box.js';

export interface ImageOptions {
  fit?: Fit;
  maxPixels?: number;
  /** Resize the purified PNG back to the input's original size (default: model resolution). */
  keepSize?: boolean;
}

export interface PurifiedImage {
  png: Buffer;
  tensor: Tensor4D; // [1,H,W,C] purified, model resolution; caller disposes
  width: number;
  height: number;
  originalWidth: number;
  originalHeight: number;
}

const diffusionCache = new Map<string, DiffusionModel>();

/** The diffusion weights path (without suffix) of a shipped model name or a weights path. */
export function modelPath(model: string): string {
  if (model.includes('/') || model.includes('\\')) return model;
  if (!/^[a-z0-9-]+$/.test(model) || !existsSync(join(modelsDir(), model))) {
    throw new PurifyError('UNKNOWN_MODEL', `unknown model ${JSON.stringify(model)} (shipped: fashion-mnist, mnist; or a path to weights)`, 'model');
  }
  return join(modelsDir(), model, 'diffusion');
}

/** Load (once per thread) a diffusion model by shipped name or weights path. */
export async function loadDiffusionModel(model = 'fashion-mnist'): Promise<DiffusionModel> {
  await initBackend();
  const path = modelPath(model);
  let m = diffusionCache.get(path);
  if (!m) {
    try {
      m = loadDiffusion(path);
    } catch (e) {
      throw new PurifyError('UNKNOWN_MODEL', e instanceof Error ? e.message : String(e), 'model');
    }
    diffusionCache.set(path, m);
  }
  return m;
}

/**
 * Load (once per thread) the restoration model that goes with `model` (a shipped name, or a path to its
 * diffusion or restore weights): `<dir>/restore.{json,bin}`. Not there yet -> PurifyError UNKNOWN_MODEL.
 */
export async function loadRestoreModel(model = 'fashion-mnist'): Promise<DiffusionModel> {
  await initBackend();
  const path = restoreWeightsPath(modelPath(model));
  if (!weightsExist(path)) {
    throw new PurifyError(
      'UNKNOWN_MODEL',
      `mode 'restore' needs restoration weights at ${path}.json/.bin, which do not exist (not trained or not shipped for this model yet; ` +
        'train them with `advpurify train restore --dataset fashion-mnist`)',
      'mode',
    );
  }
  const m = await loadDiffusionModel(path);
  if (!isRestoreModel(m)) throw new PurifyError('UNKNOWN_MODEL', `${path}: diffusion weights without a level net, not a restoration model (train with \`advpurify train restore\`)`, 'mode');
  return m;
}

/** A purifier bound to a model and options; images in, images out. */
export class ImagePurifier extends Purifier {
  /** Decode (sharp), purify, encode PNG. */
  async purifyImage(buf: Uint8Array, o: ImageOptions & CallOptions = {}): Promise<PurifiedImage> {
    const [h, w, c] = this.inputShape;
    const dec = await decodeImage(buf, { height: h, width: w, channels: c as 1 | 3, fit: o.fit, maxPixels: o.maxPixels });
    try {
      const tensor = this.purify(dec.tensor, { seed: o.seed });
      const size = o.keepSize ? { width: dec.originalWidth, height: dec.originalHeight } : undefined;
      const png = await encodePng(tensor, size);
      return { png, tensor, width: size?.width ?? w, height: size?.height ?? h, originalWidth: dec.originalWidth, originalHeight: dec.originalHeight };
    } finally {
      dec.tensor.dispose();
    }
  }

  /** k purification draws (k = options.draws unless given), each [N,H,W,C]. */
  purifyDraws(x: Tensor4D, k = this.options.draws, call: CallOptions = {}): Tensor4D[] {
    const r = this.purifyDrawsWithMask(x, k, call);
    r.mask?.dispose();
    return r.draws;
  }

  /** `purifyDraws`, and the first draw's inpainted region [N,H,W,1] (modes patch, auto; else null). Caller disposes all. */
  purifyDrawsWithMask(x: Tensor4D, k = this.options.draws, call: CallOptions = {}): { draws: Tensor4D[]; mask: Tensor4D | null } {
    const base = call.seed ?? this.options.seed;
    const seed = (i: number) => (base === undefined ? undefined : (base + 7919 * i) % 2 ** 31);
    const first = this.purifyWithMask(x, { seed: seed(0) });
    const draws = [first.purified];
    try {
      for (let i = 1; i < k; i++) draws.push(this.purify(x, { seed: seed(i) }));
    } catch (e) {
      tf.dispose([...draws, ...(first.mask ? [first.mask] : [])]);
      throw e;
    }
    return { draws, mask: first.mask };
  }

  /**
   * Purify `draws` times, classify each draw, majority-vote. Returns labels, the vote fractions
   * [N, classes], the mean softmax over draws and (patch, auto) the first draw's inpainted region,
   * 0/1 [N*H*W] (else null).
   */
  classify(clf: Classifier, x: Tensor4D, call: CallOptions = {}): { labels: Int32Array; votes: Float32Array; probabilities: Float32Array; classes: number; mask: Uint8Array | null } {
    const { draws, mask: m } = this.purifyDrawsWithMask(x, this.options.draws, call);
    try {
      const mask = m && Uint8Array.from(m.dataSync(), (v) => (v > 0.5 ? 1 : 0));
      const r = tf.tidy(() => {
        const logits = draws.map((d) => clf.predict(d));
        const classes = logits[0].shape[1];
        const votes = tf.addN(logits.map((l) => tf.oneHot(l.argMax(-1), classes))).div(draws.length) as Tensor2D;
        const probs = tf.addN(logits.map((l) => tf.softmax(l))).div(draws.length) as Tensor2D;
        // majority vote, ties broken by mean probability
        const labels = votes.add(probs.mul(1e-3)).argMax(-1);
        return { labels: labels.dataSync() as Int32Array, votes: votes.dataSync() as Float32Array, probabilities: probs.dataSync() as Float32Array, classes };
      });
      return { ...r, mask };
    } finally {
      tf.dispose(m ? [...draws, m] : draws);
    }
  }
}

export async function createPurifier(options: PurifyOptions = {}): Promise<ImagePurifier> {
  const { mode } = resolveOptions(options); // typed errors before any loading
  const model = await (mode === 'restore' ? loadRestoreModel : loadDiffusionModel)(options.model ?? 'fashion-mnist');
  return new ImagePurifier(model, options);
}

const defaultPurifiers = new Map<string, Promise<ImagePurifier>>();

/** One-call purification with the default options (or `options`): Buffer -> PNG Buffer, Tensor -> Tensor. */
export async function purify(input: Uint8Array, options?: PurifyOptions & ImageOptions): Promise<Buffer>;
export async function purify(input: Tensor4D, options?: PurifyOptions): Promise<Tensor4D>;
export async function purify(input: Uint8Array | Tensor4D, options: PurifyOptions & ImageOptions = {}): Promise<Buffer | Tensor4D> {
  const { fit, maxPixels, keepSize, ...popts } = options;
  const key = JSON.stringify(popts);
  let pp = defaultPurifiers.get(key);
  if (!pp) {
    pp = createPurifier(popts);
    defaultPurifiers.set(key, pp);
    pp.catch(() => defaultPurifiers.delete(key));
  }
  const p = await pp;
  if (input instanceof tf.Tensor) return p.purify(input as Tensor4D);
  if (input instanceof Uint8Array) {
    const r = await p.purifyImage(input, { fit, maxPixels, keepSize });
    r.tensor.dispose();
    return r.png;
  }
  throw new PurifyError('BAD_INPUT', 'purify() takes a Buffer/Uint8Array of image bytes or a tf.Tensor4D');
}

/** Load a shipped classifier (`'fashion-mnist'`, `'mnist'`), a variant (e.g. 'classifier-adv') or a weights path. */
export async function loadClassifier(model = 'fashion-mnist', variant = 'classifier'): Promise<CnnClassifier> {
  await initBackend();
  try {
    return loadCnn(model, variant);
  } catch (e) {
    throw new PurifyError('UNKNOWN_MODEL', e instanceof Error ? e.message : String(e), 'model');
  }
}
