import { beforeAll, describe, expect, it } from 'vitest';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadFixture, subset } from '../src/data/index.js';
import type { CnnClassifier } from '../src/models/classifier.js';
import type { DiffusionModel } from '../src/models/diffusion-model.js';
import { createPurifier, loadClassifier, loadDiffusionModel } from '../src/purify/index.js';
import { boxMask, inpaint, localizePatch, maskIoUs, purifyPatch, randomBox, type Box } from '../src/purify/patch/index.js';
import { applyPatch, evasionPenalty, maskedBpda, pastePatch, patchPgd, trainUniversalPatch, type PatchAttackResult } from '../attacks/patch.js';
import { mulberry32 } from '../src/util/rng.js';

const fixture = loadFixture();
const H = 28;
/** Let vitest's worker answer its pending RPCs before a long synchronous computation (slow, shared machines). */
const settle = () => new Promise((r) => setTimeout(r, 200));
/** Generous per-test limit: these take seconds on an idle machine and many minutes on a starved one. */
const SLOW = 1_800_000;

/** Largest |a - b| over pixels outside each image's box, and min/max of b. */
function outsideChange(a: Float32Array, b: Float32Array, boxes: readonly Box[]): { outside: number; lo: number; hi: number } {
  let outside = 0;
  let [lo, hi] = [Infinity, -Infinity];
  boxes.forEach((box, i) => {
    for (let r = 0; r < H; r++) {
      for (let c = 0; c < H; c++) {
        const j = (i * H + r) * H + c;
        [lo, hi] = [Math.min(lo, b[j]), Math.max(hi, b[j])];
        const inside = r >= box.top && r < box.top + box.size && c >= box.left && c < box.left + box.size;
        if (!inside) outside = Math.max(outside, Math.abs(a[j] - b[j]));
      }
    }
  });
  return { outside, lo, hi };
}

/** A random black-and-white s x s square pasted at a random place of each image (a high-contrast patch). */
function pasteSquares(x: Tensor4D, size: number, seed: number): { x: Tensor4D; boxes: Box[] } {
  const rng = mulberry32(seed);
  const boxes = Array.from({ length: x.shape[0] }, () => randomBox(size, H, H, rng));
  const xp = tf.tidy(() => applyPatch(x, boxMask(boxes, H, H), tf.round(tf.randomUniform(x.shape, 0, 1, 'float32', seed)) as Tensor4D));
  return { x: xp, boxes };
}

describe('patch attacks on the shipped Fashion-MNIST classifier', () => {
  let clf: CnnClassifier;
  beforeAll(async () => {
    clf = await loadClassifier('fashion-mnist');
  });

  it('a per-image patch stays in its box and in [0,1], and fools the undefended classifier on most images', async () => {
    await settle();
    const { x, y } = batch(fixture, Array.from({ length: 30 }, (_, i) => i));
    const before = tf.memory().numTensors;
    // three chunks of 10, letting the test worker breathe in between
    const parts: PatchAttackResult[] = [];
    for (let s = 0; s < 30; s += 10) {
      const [xs, ys] = [x.slice(s, 10), y.slice(s, 10)];
      parts.push(patchPgd((v) => clf.predict(v), xs, ys, { size: 6, location: 'search', candidates: 8, steps: 30, restarts: 2, seed: 1 + s }));
      tf.dispose([xs, ys]);
      await settle();
    }
    const r = {
      xAdv: tf.concat(parts.map((p) => p.xAdv)) as Tensor4D,
      boxes: parts.flatMap((p) => p.boxes),
      cleanCorrect: Uint8Array.from(parts.flatMap((p) => [...p.cleanCorrect])),
      fooled: Uint8Array.from(parts.flatMap((p) => [...p.fooled])),
    };
    tf.dispose(parts.map((p) => p.xAdv));
    const { outside, lo, hi } = outsideChange(x.dataSync() as Float32Array, r.xAdv.dataSync() as Float32Array, r.boxes);
    expect(outside).toBe(0);
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    // attacked images carry a 6x6 box inside the image; images the classifier already got wrong are left as they are (size 0)
    expect(r.boxes.every((b, i) => (r.cleanCorrect[i] ? b.size === 6 && b.top >= 0 && b.left >= 0 && b.top + 6 <= H && b.left + 6 <= H : b.size === 0))).toBe(true);
    const attacked = r.cleanCorrect.reduce((s, v) => s + v, 0);
    const broken = r.cleanCorrect.reduce((s, v, i) => s + (v && r.fooled[i] ? 1 : 0), 0);
    console.log(`patch 6x6 PGD-30 x 2 restarts: fooled ${broken}/${attacked} clean-correct fixture images`);
    expect(attacked).toBeGreaterThan(10);
    expect(broken / attacked).toBeGreaterThan(0.5);
    // the returned images really are misclassified where the attack says so
    const pred = tf.tidy(() => clf.predict(r.xAdv).argMax(-1).dataSync());
    r.fooled.forEach((f, i) => r.cleanCorrect[i] && f && expect(pred[i]).not.toBe(fixture.labels[i]));
    r.xAdv.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
  }, SLOW);

  it('a universal patch is one patch in [0,1], pasted (resized) only inside each box', async () => {
    await settle();
    const data = subset(fixture, Array.from({ length: 64 }, (_, i) => 200 + i));
    const before = tf.memory().numTensors;
    const { patch, losses } = trainUniversalPatch((v) => clf.predict(v), data, { size: 6, steps: 4, batchSize: 16, seed: 2 });
    expect(patch.shape).toEqual([6, 6, 1]);
    expect(losses.every(Number.isFinite)).toBe(true);
    const [lo, hi] = tf.tidy(() => [patch.min().dataSync()[0], patch.max().dataSync()[0]]);
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    const { x, y } = batch(fixture, [0, 1, 2]);
    const boxes: Box[] = [{ top: 0, left: 0, size: 6 }, { top: 20, left: 13, size: 8 }, { top: 11, left: 22, size: 4 }];
    const pasted = pastePatch(x, patch, boxes);
    const { outside } = outsideChange(x.dataSync() as Float32Array, pasted.x.dataSync() as Float32Array, boxes);
    expect(outside).toBe(0);
    // at its own size the patch is pasted verbatim
    const first = tf.tidy(() => tf.max(tf.abs(tf.sub(pasted.x.slice([0, 0, 0, 0], [1, 6, 6, 1]).reshape([6, 6, 1]), patch))).dataSync()[0]);
    expect(first).toBeLessThan(1e-6);
    tf.dispose([patch, x, y, pasted.x, pasted.mask]);
    expect(tf.memory().numTensors).toBe(before);
  }, SLOW);
});

describe('patch defence with the shipped diffusion model', () => {
  let model: DiffusionModel;
  beforeAll(async () => {
    model = await loadDiffusionModel('fashion-mnist');
  });

  it('localises a pasted high-contrast square (mean IoU with the true box > 0.5)', async () => {
    await settle();
    const { x } = batch(fixture, Array.from({ length: 12 }, (_, i) => i));
    const { x: xp, boxes } = pasteSquares(x, 6, 5);
    const before = tf.memory().numTensors;
    const loc = localizePatch(model, xp, { seed: 3 });
    const ious = maskIoUs(loc.mask, boxes);
    const mean = ious.reduce((s, v) => s + v, 0) / ious.length;
    console.log(`localisation IoU, 6x6 squares on 12 fixture images: mean ${mean.toFixed(3)} [${ious.map((v) => v.toFixed(2)).join(' ')}]`);
    expect(loc.score.shape).toEqual([12, 28, 28, 1]);
    expect(mean).toBeGreaterThan(0.5);
    tf.dispose([loc.mask, loc.score]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, xp]);
  }, SLOW);

  it('inpainting keeps the unmasked pixels, replaces the masked ones, and stays in [0,1]', async () => {
    await settle();
    const { x } = batch(fixture, [20, 21, 22]);
    const { x: xp, boxes } = pasteSquares(x, 8, 6);
    const mask = boxMask(boxes, H, H);
    const before = tf.memory().numTensors;
    const out = inpaint(model, xp, mask, { steps: 5, resample: 2, seed: 1 });
    const { outside, lo, hi } = outsideChange(xp.dataSync() as Float32Array, out.dataSync() as Float32Array, boxes);
    expect(outside).toBeLessThan(1e-6);
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    // the pasted black-and-white square is gone: inside the box the result is no longer the patch
    const changed = tf.tidy(() => tf.sum(tf.mul(tf.abs(tf.sub(out, xp)), mask)).div(tf.sum(mask)).dataSync()[0]);
    expect(changed).toBeGreaterThan(0.1);
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, xp, mask]);
  }, SLOW);

  it('purifyPatch returns the mask; the masked-BPDA gradient flows outside the mask only; no leaks', async () => {
    await settle();
    const { x } = batch(fixture, [30, 31]);
    const { x: xp } = pasteSquares(x, 6, 7);
    const opts = { inpaint: { steps: 3, resample: 1 }, seed: 4 };
    const before = tf.memory().numTensors;
    const r = purifyPatch(model, xp, opts);
    expect(r.x.shape).toEqual([2, 28, 28, 1]);
    expect(r.mask.shape).toEqual([2, 28, 28, 1]);
    expect(r.found).toHaveLength(2);
    const defense = maskedBpda((v, seed) => purifyPatch(model, v, { ...opts, seed }));
    const g = tf.grad((v: tf.Tensor) => tf.sum(defense.forward(v as Tensor4D, 4)))(xp);
    const [inside, outside] = tf.tidy(() => [tf.sum(tf.abs(tf.mul(g, r.mask))).dataSync()[0], tf.sum(tf.abs(tf.mul(g, tf.sub(1, r.mask)))).dataSync()[0]]);
    expect(inside).toBe(0);
    expect(outside).toBeGreaterThan(0);
    tf.dispose([r.x, r.mask, g]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, xp]);
  }, SLOW);

  it("purify modes 'patch' and 'auto' keep shape and range and leak nothing", async () => {
    await settle();
    const { x, y } = batch(fixture, [40]);
    for (const mode of ['patch', 'auto'] as const) {
      const p = await createPurifier({ mode, tStar: 50, steps: 2, seed: 1 });
      const before = tf.memory().numTensors;
      const out = p.purify(x);
      expect(out.shape).toEqual([1, 28, 28, 1]);
      const [lo, hi] = tf.tidy(() => [out.min().dataSync()[0], out.max().dataSync()[0]]);
      expect(lo).toBeGreaterThanOrEqual(0);
      expect(hi).toBeLessThanOrEqual(1);
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
    tf.dispose([x, y]);
  }, SLOW);

  it('the evasion term penalises a box the localiser finds (with a gradient through the model) and ignores one it misses', async () => {
    await settle();
    const { x, y } = batch(fixture, [50, 51, 52, 53]);
    const { x: xp, boxes } = pasteSquares(x, 6, 9);
    const before = tf.memory().numTensors;
    const found = boxMask(boxes, H, H);
    // clean images, a box the localiser cannot "find" there: its best square overlaps nothing of an empty-corner 1x1 box
    const elsewhere = boxMask(boxes.map(() => ({ top: 0, left: 0, size: 1 })), H, H);
    const penalty = evasionPenalty(model, {}, 1);
    const onPatch = tf.tidy(() => penalty(xp, found).dataSync());
    const offPatch = tf.tidy(() => penalty(x, elsewhere).dataSync());
    expect(Array.from(onPatch).filter((v) => v < 0).length).toBeGreaterThanOrEqual(3);
    expect(Array.from(offPatch).every((v) => v === 0)).toBe(true);
    const g = tf.grad((v: tf.Tensor) => tf.sum(penalty(v as Tensor4D, found)))(xp);
    expect(tf.tidy(() => tf.sum(tf.abs(tf.mul(g, found))).dataSync()[0])).toBeGreaterThan(0);
    tf.dispose([found, elsewhere, g]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y, xp]);
  }, SLOW);
});
