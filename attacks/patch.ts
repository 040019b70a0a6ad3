/**
 * Patch attacks: the threat model is an s x s square anywhere in the image whose pixels may take any
 * value in [0,1]; pixels outside the square are unchanged.
 *  - patchPgd: a per-image patch, PGD (sign steps) on the pixels of a chosen or searched box, restarts
 *    at new places;
 *  - trainUniversalPatch (Brown et al. 2017): one patch trained over a data set at random places and
 *    scales (EOT over placement), then pasted onto test images with `pastePatch`.
 * Both take any Target (attacks/common.ts), so `adaptive(defense, classifier, { eot })` gives EOT over a
 * defence's randomness. Against a localise-and-inpaint defence, `maskedBpda` passes gradients through
 * the pixels the defence kept and blocks them where it inpainted (the thresholded mask has no gradient),
 * and `penalty` adds an evasion term (e.g. minus the localiser's anomaly score inside the box).
 */
import { readTidy, tf, type Tensor1D, type Tensor4D } from '../src/backend/index.js';
import { boxMask, randomBox, type Box } from '../src/purify/patch/box.js';
import { anomalyScore, findPatch, LOCALIZE_DEFAULTS, type LocalizeOptions } from '../src/purify/patch/localize.js';
import type { DiffusionModel } from '../src/models/diffusion-model.js';
import { cryptoSeed, mulberry32, type Rng } from '../src/util/rng.js';
import { asModel, labelTensor, misclassified, nextSeed, Outcome, perExampleLoss, rows, toLabels } from './common.js';
import type { AttackModel, AttackResult, Labels, LossName, Target } from './common.js';
import type { Defense } from './eot.js';

type Tensor3D = tf.Tensor3D;

/** An extra objective to maximise with the classifier loss: x [n,H,W,C] and the box masks [n,H,W,1] -> [n]. */
export type PatchPenalty = (x: Tensor4D, box: Tensor4D) => Tensor1D;

export interface PatchPgdOptions {
  size: number;
  /** 'random' (a fresh random box per restart), 'search' (the best of `candidates` random boxes by loss), or one box per image. */
  location?: 'random' | 'search' | readonly Box[];
  candidates?: number; // default 8
  steps?: number; // default 100
  stepSize?: number; // default 1/16 (sign steps on [0,1] values)
  restarts?: number; // default 1
  loss?: LossName; // default 'ce'
  seed?: number;
  /** Adaptive term and its weight relative to the classifier loss (each gradient is L1-normalised per example). */
  penalty?: PatchPenalty;
  penaltyWeight?: number; // default 1
}

export interface PatchAttackResult extends AttackResult {
  /** Where each image's patch is (for images never fooled, the box of the highest-loss iterate; size 0 for images not attacked). */
  boxes: Box[];
}

/** Paste `values` into x inside the masks: x (1 - m) + values m. */
export function applyPatch(x: Tensor4D, mask: Tensor4D, values: Tensor4D): Tensor4D {
  return tf.tidy(() => tf.add(tf.mul(x, tf.sub(1, mask)), tf.mul(values, mask)) as Tensor4D);
}

function l1Normalised(g: Tensor4D): Tensor4D {
  return tf.tidy(() => tf.div(g, tf.add(tf.mean(tf.abs(g), [1, 2, 3], true), 1e-12)) as Tensor4D);
}

/** Gradient of the attacker's objective at x: classifier loss (through `model`) plus the penalty. */
function objectiveGrad(model: AttackModel, x: Tensor4D, y: Tensor1D, mask: Tensor4D, o: PatchPgdOptions, loss: LossName) {
  const g = model.lossGrad(x, y, loss);
  if (!o.penalty) return g;
  const pg = tf.grad((xv: tf.Tensor) => tf.sum(o.penalty!(xv as Tensor4D, mask)))(x) as Tensor4D;
  const grad = tf.tidy(() => tf.add(l1Normalised(g.grad), tf.mul(l1Normalised(pg), o.penaltyWeight ?? 1)) as Tensor4D);
  tf.dispose([pg, g.grad]);
  return { ...g, grad };
}

/** The s x s box with the largest sum of |g| (summed over channels) in each image: where the loss is most sensitive. */
function salientBoxes(g: Tensor4D, size: number): Box[] {
  const [n, h, w] = g.shape;
  const sal = readTidy(() => tf.sum(tf.abs(g), 3));
  return Array.from({ length: n }, (_, i) => {
    let best: Box = { top: 0, left: 0, size };
    let bestSum = -Infinity;
    for (let top = 0; top + size <= h; top++) {
      for (let left = 0; left + size <= w; left++) {
        let sum = 0;
        for (let r = top; r < top + size; r++) for (let c = left; c < left + size; c++) sum += sal[(i * h + r) * w + c];
        if (sum > bestSum) [best, bestSum] = [{ top, left, size }, sum];
      }
    }
    return best;
  });
}

/**
 * Boxes for rows idx: given, random, or searched. Search: candidates are the most gradient-salient box and
 * `candidates - 1` random ones; each is scored by the loss of a one-step patch (0/1 by the gradient's
 * sign) and the best is kept.
 */
function chooseBoxes(model: AttackModel, out: Outcome, idx: number[], o: PatchPgdOptions, rng: Rng): Box[] {
  const [h, w] = [out.x.shape[1], out.x.shape[2]];
  if (Array.isArray(o.location)) return idx.map((i) => o.location![i] as Box);
  if (o.location !== 'search') return idx.map(() => randomBox(o.size, h, w, rng));
  const k = Math.max(1, o.candidates ?? 8);
  const x0 = rows(out.x, idx);
  const y = labelTensor(out.y, idx);
  const g = model.lossGrad(x0, y, o.loss ?? 'ce');
  const salient = salientBoxes(g.grad, o.size);
  const cands = idx.map((_, r) => [salient[r], ...Array.from({ length: k - 1 }, () => randomBox(o.size, h, w, rng))]);
  const losses = Array.from({ length: k }, (_, c) =>
    tf.tidy(() => {
      const m = boxMask(cands.map((b) => b[c]), h, w);
      const xa = applyPatch(x0, m, tf.step(g.grad) as Tensor4D);
      return perExampleLoss(o.loss ?? 'ce', model.logits(xa), y).dataSync();
    }),
  );
  tf.dispose([x0, y, g.grad, g.loss, g.logits]);
  out.count(idx, k + 1);
  return idx.map((_, r) => cands[r][losses.reduce((best, l, c) => (l[r] > losses[best][r] ? c : best), 0)]);
}

/** Per-image patch attack: PGD on the pixels of one s x s box per image, values in [0,1]. */
export function patchPgd(target: Target, x: Tensor4D, y: Labels, o: PatchPgdOptions): PatchAttackResult {
  const model = asModel(target);
  const out = new Outcome(model, x, toLabels(y, x.shape[0]));
  const [h, w] = [x.shape[1], x.shape[2]];
  const rng = mulberry32(o.seed ?? 0);
  // the box of each image's recorded adversarial (Outcome keeps the first fooling or the highest-loss iterate)
  const boxes: Box[] = Array.from({ length: x.shape[0] }, () => ({ top: 0, left: 0, size: 0 }));
  const bestLoss = new Float64Array(x.shape[0]).fill(-Infinity);
  const steps = o.steps ?? 100;
  const alpha = o.stepSize ?? 1 / 16;
  const loss = o.loss ?? 'ce';
  for (let r = 0; r < (o.restarts ?? 1); r++) {
    let idx = out.remaining();
    if (idx.length === 0) break;
    let chosen = chooseBoxes(model, out, idx, o, rng);
    let x0 = rows(out.x, idx);
    let m = boxMask(chosen, h, w);
    let yt = labelTensor(out.y, idx);
    let xCur = tf.tidy(() => applyPatch(x0, m, tf.randomUniform(x0.shape, 0, 1, 'float32', nextSeed(rng)) as Tensor4D));
    for (let t = 0; t <= steps && idx.length > 0; t++) {
      const g = objectiveGrad(model, xCur, yt, m, o, loss);
      out.count(idx);
      const wrong = misclassified(g.logits, Array.from(idx, (i) => out.y[i]));
      const lossNow = g.loss.dataSync();
      idx.forEach((i, k) => {
        if (wrong[k] || lossNow[k] > bestLoss[i]) boxes[i] = chosen[k];
        bestLoss[i] = Math.max(bestLoss[i], lossNow[k]);
      });
      out.recordFooled(idx, xCur, wrong);
      out.offerBest(idx, xCur, lossNow);
      tf.dispose([g.loss, g.logits]);
      let grad = g.grad;
      if (wrong.some((v) => v)) {
        const keep = [...wrong.keys()].filter((k) => !wrong[k]);
        const next = [x0, m, yt, xCur, grad].map((tensor) => rows(tensor, keep));
        tf.dispose([x0, m, yt, xCur, grad]);
        [x0, m, yt, xCur, grad] = next as [Tensor4D, Tensor4D, Tensor1D, Tensor4D, Tensor4D];
        idx = keep.map((k) => idx[k]);
        chosen = keep.map((k) => chosen[k]);
      }
      if (t === steps || idx.length === 0) {
        grad.dispose();
        break;
      }
      const xNext = tf.tidy(() => applyPatch(x0, m, tf.clipByValue(tf.add(xCur, tf.mul(alpha, tf.sign(grad))), 0, 1) as Tensor4D));
      tf.dispose([xCur, grad]);
      xCur = xNext;
    }
    tf.dispose([x0, m, yt, xCur]);
  }
  return { ...out.result(), boxes };
}

/**
 * Paste a square patch [s0,s0,C] onto each image at `boxes` (bilinearly resized to each box's size).
 * Differentiable in x and the patch. Returns the images and the box masks [N,H,W,1].
 */
export function pastePatch(x: Tensor4D, patch: Tensor3D, boxes: readonly Box[]): { x: Tensor4D; mask: Tensor4D } {
  const [n, h, w, c] = x.shape;
  const mask = boxMask(boxes, h, w);
  const pasted = tf.tidy(() => {
    const canvases = boxes.map((b) => {
      const p = b.size === patch.shape[0] ? patch : tf.image.resizeBilinear(patch, [b.size, b.size], true);
      return tf.pad(p, [[b.top, h - b.top - b.size], [b.left, w - b.left - b.size], [0, 0]]);
    });
    return applyPatch(x, mask, tf.stack(canvases) as Tensor4D);
  });
  if (n !== boxes.length || c !== patch.shape[2]) throw new Error(`pastePatch: ${boxes.length} boxes / ${patch.shape[2]} channels for x of shape [${x.shape}]`);
  return { x: pasted, mask };
}

export interface UniversalPatchOptions {
  size: number;
  /** Pasted side = round(size * u), u uniform in [lo, hi] (default [0.75, 1.25]). */
  scale?: [number, number];
  steps?: number; // default 200
  batchSize?: number; // default 32
  stepSize?: number; // default 1/32
  loss?: LossName; // default 'ce'
  seed?: number;
  penalty?: PatchPenalty;
  penaltyWeight?: number;
}

/** Training images as a sampler: `count` images of shape [H,W,C] in [0,1] with labels. */
export interface PatchData {
  images: Float32Array;
  labels: Int32Array;
  count: number;
  shape: [number, number, number];
}

/**
 * Brown et al.'s universal adversarial patch: maximise E_{x, place, scale}[loss(f(paste(x, p)))] over one
 * patch p by signed stochastic gradient ascent, each step on a random batch with random places and scales.
 * Returns the patch [size,size,C] in [0,1] (the caller disposes) and the mean loss per step.
 */
export function trainUniversalPatch(target: Target, data: PatchData, o: UniversalPatchOptions): { patch: Tensor3D; losses: number[] } {
  const model = asModel(target);
  const rng = mulberry32(o.seed ?? 0);
  const [h, w, c] = data.shape;
  const [lo, hi] = o.scale ?? [0.75, 1.25];
  const bs = Math.min(o.batchSize ?? 32, data.count);
  const alpha = o.stepSize ?? 1 / 32;
  const size = h * w * c;
  let patch = tf.randomUniform([o.size, o.size, c], 0, 1, 'float32', nextSeed(rng)) as Tensor3D;
  const losses: number[] = [];
  for (let s = 0; s < (o.steps ?? 200); s++) {
    const pick = Array.from({ length: bs }, () => Math.floor(rng() * data.count));
    const buf = new Float32Array(bs * size);
    pick.forEach((j, i) => buf.set(data.images.subarray(j * size, (j + 1) * size), i * size));
    const boxes = pick.map(() => randomBox(Math.max(1, Math.min(h, Math.round(o.size * (lo + rng() * (hi - lo))))), h, w, rng));
    const next = tf.tidy(() => {
      const x = tf.tensor4d(buf, [bs, h, w, c]);
      const y = tf.tensor1d(Int32Array.from(pick, (j) => data.labels[j]), 'int32');
      const { x: xa, mask } = pastePatch(x, patch, boxes);
      const g = objectiveGrad(model, xa, y, mask, o, o.loss ?? 'ce');
      losses.push(g.loss.mean().dataSync()[0]);
      // chain rule to the patch: d/dp sum(paste(x, p) * g)
      const gp = tf.grad((p: tf.Tensor) => tf.sum(tf.mul(pastePatch(x, p as Tensor3D, boxes).x, g.grad)))(patch);
      return tf.clipByValue(tf.add(patch, tf.mul(alpha, tf.sign(gp))), 0, 1) as Tensor3D;
    });
    patch.dispose();
    patch = next;
  }
  return { patch, losses };
}

/**
 * A localise-and-inpaint defence as an attack surface: forward = the full defence; backward = dy where the
 * defence kept the input (mask 0) and 0 where it inpainted (mask 1) — BPDA for the non-differentiable mask
 * and for anything composed after it (e.g. diffpure), exact for the kept pixels of plain inpainting.
 */
export function maskedBpda(forward: (x: Tensor4D, seed: number) => { x: Tensor4D; mask: Tensor4D }, randomized = true): Defense {
  return {
    randomized,
    forward: (x, seed) => {
      const op = tf.customGrad((...args: unknown[]) => {
        const r = forward(args[0] as Tensor4D, seed ?? cryptoSeed());
        (args[1] as (t: tf.Tensor[]) => void)([r.mask]);
        return { value: r.x, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, tf.sub(1, saved[0])) };
      });
      return op(x) as Tensor4D;
    },
  };
}

/**
 * Evasion term against the reconstruction-residual localiser (src/purify/patch/localize.ts): minus the mean
 * anomaly score inside the box, for the images whose box the localiser currently finds (its best square
 * overlaps the box; one noise draw per t). Exact gradient through the diffusion model.
 */
export function evasionPenalty(model: DiffusionModel, opts: LocalizeOptions = {}, seed = 0): PatchPenalty {
  const o = { ...LOCALIZE_DEFAULTS, ...opts };
  let s = seed;
  return (x, box) =>
    tf.tidy(() => {
      const [n, h, w] = x.shape;
      const score = anomalyScore(model, x, o.ts, 1, s++);
      const [data, inBoxPx] = [score.dataSync(), box.dataSync()];
      const found = Float32Array.from({ length: n }, (_, i) => {
        const f = findPatch(data.subarray(i * h * w, (i + 1) * h * w), h, w, o);
        for (let r = f.top; r < f.top + f.size; r++) for (let c = f.left; c < f.left + f.size; c++) if (inBoxPx[(i * h + r) * w + c]) return 1;
        return 0;
      });
      const inBox = tf.div(tf.sum(tf.mul(score, box), [1, 2, 3]), tf.maximum(tf.sum(box, [1, 2, 3]), 1));
      return tf.neg(tf.mul(inBox, tf.tensor1d(found))) as Tensor1D;
    });
}
