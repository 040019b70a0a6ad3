/**
 * PatchCleanser double masking: the mask set covers every patch window, Algorithm 1's three cases, and the
 * certificate holds: no patch of the certified size, anywhere, with any of the tried contents, changes a
 * certified image's double-masking label.
 */
import { describe, expect, it } from 'vitest';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadFixture, take } from '../src/data/index.js';
import { loadClassifier } from '../src/purify/index.js';
import { axisMasks, doubleMasking, maskSet, patchCleanser } from '../src/purify/patch/patchcleanser.js';
import { mulberry32 } from '../src/util/rng.js';

describe('PatchCleanser mask set', () => {
  it('every p x p window lies inside some mask, for every image size, patch size and mask count tried', () => {
    for (const n of [12, 28, 31]) {
      for (let p = 1; p <= 12; p++) {
        for (let k = 1; k <= 8; k++) {
          const { starts, side } = axisMasks(n, p, k);
          expect(side).toBeLessThanOrEqual(n);
          expect(starts.length).toBeLessThanOrEqual(k);
          for (const s of starts) expect(s + side).toBeLessThanOrEqual(n);
          for (let a = 0; a + p <= n; a++) expect(starts.some((s) => s <= a && a + p <= s + side), `n ${n} p ${p} k ${k} window ${a}`).toBe(true);
        }
      }
    }
    expect(maskSet(28, 28, { patch: 6 })).toHaveLength(36); // k = 6: stride 4, side 9
    expect(maskSet(28, 28, { patch: 6 })[0]).toEqual({ top: 0, left: 0, height: 9, width: 9 });
    expect(() => axisMasks(28, 0, 6)).toThrow(RangeError);
    expect(() => axisMasks(28, 6, 0)).toThrow(RangeError);
  });
});

describe('double-masking inference (Algorithm 1)', () => {
  const table = (one: number[], second: (i: number, j: number) => number) =>
    one.map((_, i) => one.map((__, j) => (i === j ? one[i] : second(i, j))));
  it('case I: all one-mask labels agree', () => {
    expect(doubleMasking(table([3, 3, 3], () => 7))).toBe(3);
  });
  it('case II: a disagreeing mask whose second-round labels all agree with it wins', () => {
    // mask 2 (label 5) holds the patch: with it applied, every second mask also says 5
    expect(doubleMasking(table([1, 1, 5, 1], (i, j) => (i === 2 || j === 2 ? 5 : 1)))).toBe(5);
  });
  it('case III: otherwise the majority', () => {
    expect(doubleMasking(table([1, 1, 5, 1], (i, j) => (i === 2 || j === 2 ? (i + j) % 2 ? 5 : 1 : 1)))).toBe(1);
  });
});

describe('PatchCleanser certification', () => {
  // a toy "bright spot" detector on 12 x 12 images: class 1 iff some 3 x 3 block averages above 0.8. A
  // pasted bright patch flips most one-mask labels of a dark image, so only case II of double masking
  // (the mask that covers the patch, confirmed by every second mask) keeps the label.
  const toy = (x: Tensor4D) => tf.tidy(() => {
    const m = tf.avgPool(x, 3, 1, 'valid').max([1, 2, 3]).reshape([-1, 1]);
    return tf.concat([tf.sub(0.8, m), tf.sub(m, 0.8)], 1) as tf.Tensor2D;
  });
  it('a certified label survives every 3 x 3 patch at every place (contents 0, 1, noise); some images are not certified', () => {
    const rng = mulberry32(4);
    const n = 12;
    const count = 12;
    const px = Float32Array.from({ length: count * n * n }, () => 0.6 * rng());
    for (let img = 0; img < count; img += 3) { // every third image has a bright spot
      const [t, l] = [Math.floor(rng() * 9), Math.floor(rng() * 9)];
      for (let y = t; y < t + 3; y++) for (let xx = l; xx < l + 3; xx++) px[img * n * n + y * n + xx] = 1;
    }
    const x = tf.tensor4d(px, [count, n, n, 1]);
    const clean = tf.tidy(() => toy(x).argMax(-1).dataSync());
    const before = tf.memory().numTensors;
    const r = patchCleanser(toy, x, clean, { patch: 3, perAxis: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.masks).toBe(9);
    expect(r.evaluations).toBe(45);
    expect(r.certified.some((c) => c)).toBe(true);
    expect(r.certified.some((c) => !c)).toBe(true);
    for (let i = 0; i < count; i++) if (r.certified[i]) expect(r.prediction[i]).toBe(clean[i]);
    // the certificate: for certified images, double masking returns the label whatever 3 x 3 patch is pasted
    const certifiedIdx = r.certified.flatMap((c, i) => (c ? [i] : []));
    const contents = [() => 0, () => 1, () => rng()];
    const patched: number[] = [];
    const labels: number[] = [];
    for (const i of certifiedIdx) {
      for (let top = 0; top + 3 <= n; top++) {
        for (let left = 0; left + 3 <= n; left++) {
          for (const v of contents) {
            const img = px.slice(i * n * n, (i + 1) * n * n);
            for (let y = top; y < top + 3; y++) for (let xx = left; xx < left + 3; xx++) img[y * n + xx] = v();
            patched.push(...img);
            labels.push(clean[i]);
          }
        }
      }
    }
    const xp = tf.tensor4d(patched, [labels.length, n, n, 1]);
    const rp = patchCleanser(toy, xp, labels, { patch: 3, perAxis: 3 });
    expect(rp.prediction).toEqual(labels);
    tf.dispose([x, xp]);
  });

  it('runs on the shipped classifier and fixture images without leaking tensors; certified implies correct', async () => {
    const clf = await loadClassifier('fashion-mnist');
    const { x, y } = batch(take(loadFixture(), 3), [0, 1, 2]);
    const labels = y.dataSync();
    const before = tf.memory().numTensors;
    const r = patchCleanser((z) => clf.predict(z), x, labels, { patch: 4, perAxis: 4 });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.masks).toBe(16);
    expect(r.prediction).toHaveLength(3);
    r.certified.forEach((c, i) => { if (c) expect(r.prediction[i]).toBe(labels[i]); });
    tf.dispose([x, y]);
  });
});
