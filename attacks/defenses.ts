/**
 * The defences compared by `advpurify bench robustness`, each a `Defense` (images in [0,1] -> images in
 * [0,1]) in front of a classifier, with the gradient the adaptive attack uses (Athalye et al. 2018):
 *
 *   none          identity                                    exact gradient
 *   jpeg[:q]      real JPEG re-encode through sharp, q = 75     BPDA (backward = identity): the codec is not tf ops
 *   bitdepth[:b]  feature squeezing to 2^b grey levels, b = 3   BPDA (rounding has zero gradient)
 *   median        3x3 median filter, edge-replicated borders     its true sub-gradient (each output copies one input)
 *   diffpure      DiffPure (Nie et al. 2022), randomized         full gradient through every reverse step, with EOT
 *   oneshot       one-shot denoising (Carlini et al. 2023)       full gradient, with EOT
 *   diffpure-bpda, oneshot-bpda: the same purifiers attacked with BPDA instead (a weaker attack, for comparison)
 *   adv           no preprocessing; the PGD-adversarially trained classifier (models/<dataset>/classifier-adv)
 *
 * BPDA for jpeg and bitdepth is built into `forward` as a straight-through estimator
 * (value = f(x), gradient = identity), so `adaptive(defense, clf, { gradient: 'full' })` attacks them with BPDA.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { createPurifier, loadClassifier, resolveOptions, type PurifyOptions } from '../src/purify/index.js';
import type { LogitsFn } from '../src/types.js';
import type { Defense, DefenseGradient } from './eot.js';

export const DEFENSE_NAMES = ['none', 'jpeg', 'bitdepth', 'median', 'diffpure', 'oneshot', 'restore', 'diffpure-bpda', 'oneshot-bpda', 'restore-bpda', 'adv'] as const;
export type DefenseName = (typeof DEFENSE_NAMES)[number];

/** The purify() mode behind a purification defence (diffpure, oneshot, restore, and their -bpda forms); undefined for the others. */
export function purifierMode(name: DefenseName): 'diffpure' | 'oneshot' | 'restore' | undefined {
  const base = name.replace(/-bpda$/, '');
  return base === 'diffpure' || base === 'oneshot' || base === 'restore' ? base : undefined;
}

/** A defence ready to attack: preprocessing, the classifier behind it, and how gradients cross it. */
export interface DefenseSetup {
  defense: Defense;
  classifier: LogitsFn;
  gradient: DefenseGradient;
  /** purification draws majority-voted per classification (the purifier's `draws`; 1 = a single draw) */
  votes?: number;
}

/** value = f(x) (no gradient needed), gradient = dy: BPDA with the identity as the approximation. */
function straightThrough(x: Tensor4D, f: (x: Tensor4D) => Tensor4D): Tensor4D {
  const op = tf.customGrad((...args: unknown[]) => ({ value: f(args[0] as Tensor4D), gradFunc: (dy: tf.Tensor) => dy }));
  return op(x) as Tensor4D;
}

export const identity: Defense = { randomized: false, forward: (x) => x.clone() };

/** Feature squeezing (Xu et al. 2018): round to 2^bits levels per channel; BPDA gradient. */
export function bitDepth(bits = 3): Defense {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new RangeError(`bitdepth: bits must be an integer 1..8, got ${bits}`);
  const top = 2 ** bits - 1;
  return { randomized: false, forward: (x) => straightThrough(x, (v) => tf.tidy(() => tf.div(tf.round(tf.mul(v, top)), top) as Tensor4D)) };
}

/** Mask [..., 9] selecting each pixel's median among its 9 neighbours; a constant for autodiff. */
const medianMask = tf.customGrad((...args: unknown[]) => {
  const s = args[0] as tf.Tensor5D;
  const [n, h, w, c] = s.shape;
  const { values, indices } = tf.topk(s, 5); // the 5th largest of 9 is the median
  values.dispose();
  const fifth = tf.squeeze(tf.slice(indices, [0, 0, 0, 0, 4], [n, h, w, c, 1]), [4]);
  return { value: tf.oneHot(fifth as tf.Tensor4D, 9).toFloat(), gradFunc: () => tf.zerosLike(s) };
});

/**
 * 3x3 median filter with edge-replicated borders (OpenCV's BORDER_REPLICATE), from tf ops: the 9 shifted
 * copies stacked on a new axis, the median picked by tf.topk. Differentiable: the gradient flows to
 * the input pixel each output copied.
 */
export function median3x3(x: Tensor4D): Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    let p: tf.Tensor = tf.concat([tf.slice(x, [0, 0, 0, 0], [n, 1, w, c]), x, tf.slice(x, [0, h - 1, 0, 0], [n, 1, w, c])], 1);
    p = tf.concat([tf.slice(p, [0, 0, 0, 0], [n, h + 2, 1, c]), p, tf.slice(p, [0, 0, w - 1, 0], [n, h + 2, 1, c])], 2);
    const shifted: tf.Tensor[] = [];
    for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) shifted.push(tf.slice(p, [0, dy, dx, 0], [n, h, w, c]));
    const s = tf.stack(shifted, 4) as tf.Tensor5D;
    return tf.sum(tf.mul(s, medianMask(s) as tf.Tensor5D), 4) as Tensor4D;
  });
}

export const medianFilter: Defense = { randomized: false, forward: median3x3 };

/**
 * A synchronous real-JPEG round trip: a helper thread runs sharp (libjpeg) while this thread blocks on
 * Atomics.wait, because attacks call `forward` synchronously. Same codec settings as the `jpeg`
 * degradation: grayscale JPEG for C = 1, YCbCr 4:4:4 for C = 3.
 */
const JPEG_HELPER = `
const { parentPort, workerData } = require('node:worker_threads');
const sharp = require(workerData.sharp);
parentPort.on('message', async ({ pixels, flag, n, h, w, c, quality }) => {
  const px = new Uint8Array(pixels), size = h * w * c, raw = { raw: { width: w, height: h, channels: c } };
  try {
    await Promise.all(Array.from({ length: n }, async (_, i) => {
      const img = px.subarray(i * size, (i + 1) * size);
      const enc = c === 1 ? await sharp(img, raw).toColourspace('b-w').jpeg({ quality }).toBuffer()
        : await sharp(img, raw).jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer();
      const dec = await sharp(enc).toColourspace(c === 1 ? 'b-w' : 'srgb').raw().toBuffer();
      img.set(dec.subarray(0, size));
    }));
    Atomics.store(new Int32Array(flag), 0, 1);
  } catch {
    Atomics.store(new Int32Array(flag), 0, 2);
  }
  Atomics.notify(new Int32Array(flag), 0);
});`;

let jpegHelper: Worker | undefined;

/** JPEG encode+decode of 8-bit images (n of h x w x c, packed) at `quality`, blocking until done. */
export function jpegRoundTripSync(pixels: Uint8Array, n: number, h: number, w: number, c: 1 | 3, quality: number): Uint8Array {
  if (!jpegHelper) {
    const sharpPath = createRequire(import.meta.url).resolve('sharp');
    jpegHelper = new Worker(JPEG_HELPER, { eval: true, workerData: { sharp: sharpPath } });
    jpegHelper.unref();
  }
  const shared = new SharedArrayBuffer(pixels.length);
  new Uint8Array(shared).set(pixels);
  const flag = new Int32Array(new SharedArrayBuffer(4));
  jpegHelper.postMessage({ pixels: shared, flag: flag.buffer, n, h, w, c, quality });
  if (Atomics.wait(flag, 0, 0, 120_000) === 'timed-out' || flag[0] !== 1) throw new Error('jpeg: the sharp round trip failed');
  return new Uint8Array(shared);
}

/** JPEG re-encode at `quality` (Das et al. 2017; Guo et al. 2018), real libjpeg through sharp; BPDA gradient. */
export function jpegDefense(quality = 75): Defense {
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new RangeError(`jpeg: quality must be an integer 1..100, got ${quality}`);
  const codec = (x: Tensor4D): Tensor4D => {
    const [n, h, w, c] = x.shape;
    if (c !== 1 && c !== 3) throw new RangeError(`jpeg: needs 1 or 3 channels, got ${c}`);
    const pixels = Uint8Array.from(x.dataSync(), (v) => Math.round(Math.min(1, Math.max(0, v)) * 255));
    const out = jpegRoundTripSync(pixels, n, h, w, c, quality);
    return tf.tensor4d(Float32Array.from(out, (v) => v / 255), x.shape);
  };
  return { randomized: false, forward: (x) => straightThrough(x, codec) };
}

/** A purifier as a Defense: forward(x, seed) = purify(x, { seed }); pure tf ops, differentiable end to end. */
export function purifierDefense(p: { purify(x: Tensor4D, o?: { seed?: number }): Tensor4D; options?: { mode?: string; restorer?: string } }): Defense {
  // every mode draws noise except cold-diffusion restoration, which is deterministic
  const randomized = !(p.options?.mode === 'restore' && p.options.restorer === 'cold');
  return { randomized, forward: (x, seed) => p.purify(x, { seed }) };
}

/**
 * Parse a spec `name[:param][@classifier]` ('jpeg:50', 'bitdepth:1', 'diffpure', 'adv',
 * 'diffpure@classifier-purified': the defence in front of another shipped classifier variant of the data set).
 */
export function parseDefense(spec: string): { name: DefenseName; param?: number; classifier?: string } {
  const [head, classifier, ...more] = spec.split('@');
  const [name, param, ...extra] = head.split(':');
  const value = param === undefined ? undefined : Number(param);
  if (more.length || extra.length || (param !== undefined && !Number.isFinite(value)) || !(DEFENSE_NAMES as readonly string[]).includes(name)) {
    throw new RangeError(`unknown defence "${spec}" (expected one of ${DEFENSE_NAMES.join(', ')}; jpeg:<quality>, bitdepth:<bits>; @<classifier variant>)`);
  }
  if (param !== undefined && name !== 'jpeg' && name !== 'bitdepth') throw new RangeError(`defence ${name} takes no parameter ("${spec}")`);
  if (classifier !== undefined && !/^classifier(-[a-z0-9.]+)*$/.test(classifier)) {
    throw new RangeError(`defence "${spec}": the classifier variant must be a shipped classifier name (classifier, classifier-<name>), got "${classifier}"`);
  }
  if (classifier !== undefined && name === 'adv') throw new RangeError(`defence adv is the classifier-adv variant itself; "${spec}" names another`);
  return { name: name as DefenseName, param: value, ...(classifier !== undefined ? { classifier } : {}) };
}

/** The classifier variant behind a defence spec: its @variant, classifier-adv for adv, else the standard classifier. */
export function defenseClassifier(spec: string): string {
  const { name, classifier } = parseDefense(spec);
  return classifier ?? (name === 'adv' ? 'classifier-adv' : 'classifier');
}

/** One line for reports: the defence and the gradient its adaptive attack uses. */
export function describeDefense(spec: string, purify: PurifyOptions = {}): string {
  const { name, param, classifier } = parseDefense(spec);
  const behind = classifier ? `; classifier ${classifier}` : '';
  return describeGradient(name, param, purify) + behind;
}

function describeGradient(name: DefenseName, param: number | undefined, purify: PurifyOptions): string {
  if (name === 'none') return 'exact gradient (undefended)';
  if (name === 'adv') return 'exact gradient (PGD-trained classifier, no preprocessing)';
  if (name === 'jpeg') return `BPDA (identity backward) through real JPEG q=${param ?? 75}`;
  if (name === 'bitdepth') return `BPDA (identity backward) through ${param ?? 3}-bit squeezing`;
  if (name === 'median') return 'exact sub-gradient of the 3x3 median';
  const o = resolveOptions({ ...purify, mode: purifierMode(name) });
  const what =
    o.mode === 'diffpure' ? `diffpure t*=${o.tStar} steps=${o.steps} ${o.sampler}${o.guidance > 0 ? ` guidance=${o.guidance}` : ''}`
    : o.mode === 'restore' ? `restore (${o.restorer}; the level net's choice of t is piecewise constant, held fixed)`
    : `oneshot ${o.sigma !== undefined ? `sigma=${o.sigma}` : `t=${o.tStar}`}`;
  const vote = o.draws > 1 ? `, majority vote of ${o.draws} draws (attacked through the log of their mean softmax)` : '';
  const eot = o.mode === 'restore' && o.restorer === 'cold' ? ' (deterministic: no EOT)' : ', EOT';
  return name.endsWith('-bpda') ? `BPDA (identity backward) through ${what}${vote}${eot}` : `full gradient through every step of ${what}${vote}${eot}`;
}

export interface DefenseContext {
  /** shipped model name ('fashion-mnist') */
  dataset: string;
  /** purifier options for diffpure / oneshot (t*, steps, sigma, sampler) */
  purify?: PurifyOptions;
}

/** Build a defence from its spec (see the table at the top). */
export async function loadDefense(spec: string, ctx: DefenseContext): Promise<DefenseSetup> {
  const { name, param } = parseDefense(spec);
  const clf = await loadClassifier(ctx.dataset, defenseClassifier(spec)).catch((e: Error) => {
    if (name !== 'adv') throw e;
    throw new Error(`defence adv needs models/${ctx.dataset}/classifier-adv: train it with \`advpurify train classifier --dataset ${ctx.dataset} --variant classifier-adv --init models/${ctx.dataset}/classifier --lr 1e-3 --epochs 2 --adv-eps 0.1 --adv-steps 7\` (${e.message})`);
  });
  const classifier: LogitsFn = (x) => clf.predict(x);
  if (name === 'none' || name === 'adv') return { defense: identity, classifier, gradient: 'full' };
  if (name === 'jpeg') return { defense: jpegDefense(param), classifier, gradient: 'full' };
  if (name === 'bitdepth') return { defense: bitDepth(param), classifier, gradient: 'full' };
  if (name === 'median') return { defense: medianFilter, classifier, gradient: 'full' };
  const p = await createPurifier({ ...ctx.purify, model: ctx.dataset, mode: purifierMode(name), seed: undefined, validate: false });
  return { defense: purifierDefense(p), classifier, gradient: name.endsWith('-bpda') ? 'bpda' : 'full', votes: p.options.draws };
}
