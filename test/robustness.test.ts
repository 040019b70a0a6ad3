// What users of `advpurify bench robustness` rely on: the attack really breaks an undefended model,
// adversarial images stay inside the threat model, each defence keeps images images, the median filter
// is a median filter, BPDA defences pass gradients straight through, and the full-gradient EOT attack
// really differentiates through the diffusion purifier.
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadFixture } from '../src/data/index.js';
import { createPurifier, loadClassifier } from '../src/purify/index.js';
import { buildCnn } from '../src/models/classifier.js';
import { pgdTrainingExample, trainingLogits } from '../src/train/adversarial.js';
import { mulberry32 } from '../src/util/rng.js';
import { BOUND_TOLERANCE, adaptive, perExampleLoss, perturbationNorms, pgd, type Norm } from '../attacks/index.js';
import { bitDepth, identity, jpegDefense, median3x3, medianFilter, purifierDefense } from '../attacks/defenses.js';
import type { LogitsFn } from '../src/types.js';

const fixture = loadFixture();
let f: LogitsFn;

beforeAll(async () => {
  const clf = await loadClassifier('fashion-mnist');
  f = (x) => clf.predict(x);
});

function inThreatModel(norm: Norm, eps: number, x: Tensor4D, xAdv: Tensor4D): void {
  const n = x.shape[0];
  const norms = perturbationNorms(norm, x, xAdv, n);
  for (const v of norms) expect(v).toBeLessThanOrEqual(eps + BOUND_TOLERANCE);
  const data = xAdv.dataSync();
  expect(data.every((v) => v >= 0 && v <= 1)).toBe(true);
}

describe('attacks on the shipped undefended classifier', () => {
  it('PGD-20 (margin loss) at L-inf 0.1 fools >= 95% of the correctly classified fixture images, inside the ball', async () => {
    let correct = 0;
    let fooled = 0;
    for (let start = 0; start < 100; start += 25) {
      const { x, y } = batch(fixture, Array.from({ length: 25 }, (_, i) => start + i));
      const labels = Int32Array.from(y.dataSync());
      const r = pgd(f, x, labels, { norm: 'Linf', eps: 0.1, steps: 20, loss: 'margin', seed: 3 });
      correct += r.cleanCorrect.reduce((s, v) => s + v, 0);
      fooled += r.cleanCorrect.reduce((s, v, i) => s + (v && r.fooled[i] ? 1 : 0), 0);
      inThreatModel('Linf', 0.1, x, r.xAdv);
      // the adversarial images really are misclassified (not just reported so)
      const pred = tf.tidy(() => f(r.xAdv).argMax(-1).dataSync());
      r.fooled.forEach((v, i) => v && r.cleanCorrect[i] && expect(pred[i]).not.toBe(labels[i]));
      tf.dispose([x, y, r.xAdv]);
      await new Promise((done) => setImmediate(done)); // keep the test runner's RPC alive on a busy machine
    }
    expect(correct).toBeGreaterThanOrEqual(60); // the shipped model classifies most clean images correctly
    expect(fooled / correct).toBeGreaterThanOrEqual(0.95);
  }, 900_000); // ~5 s of CPU; wall time is far longer on a busy machine

  it('L2 PGD stays inside its ball', () => {
    const { x, y } = batch(fixture, [0, 1, 2, 3, 4, 5, 6, 7]);
    const r = pgd(f, x, y, { norm: 'L2', eps: 1.0, steps: 5, seed: 1 });
    inThreatModel('L2', 1.0, x, r.xAdv);
    tf.dispose([x, y, r.xAdv]);
  });
});

describe('defences', () => {
  const { x } = batch(fixture, [10, 11, 12, 13]);

  it('each forward keeps shape and [0,1] range, and deterministic ones repeat', async () => {
    const p = await createPurifier({ model: 'fashion-mnist', mode: 'diffpure', tStar: 20, steps: 2, validate: false });
    const q = await createPurifier({ model: 'fashion-mnist', mode: 'oneshot', sigma: 0.25, validate: false });
    const defenses = { none: identity, jpeg: jpegDefense(75), bitdepth: bitDepth(3), median: medianFilter, diffpure: purifierDefense(p), oneshot: purifierDefense(q) };
    for (const [name, d] of Object.entries(defenses)) {
      const a = d.forward(x, 5);
      const b = d.forward(x, 5);
      expect(a.shape, name).toEqual(x.shape);
      const v = a.dataSync();
      expect(v.every((u) => Number.isFinite(u) && u >= 0 && u <= 1), name).toBe(true);
      if (!d.randomized) expect(Array.from(b.dataSync()), name).toEqual(Array.from(v));
      tf.dispose([a, b]);
    }
    const j = defenses.jpeg.forward(x);
    const jv = j.dataSync() as Float32Array;
    const xv = x.dataSync() as Float32Array;
    expect(jv.every((u) => Math.abs(u * 255 - Math.round(u * 255)) < 1e-4)).toBe(true); // 8-bit codec output
    const mad = jv.reduce((s, u, i) => s + Math.abs(u - xv[i]), 0) / jv.length;
    expect(mad).toBeGreaterThan(1e-4); // it really re-encodes ...
    expect(mad).toBeLessThan(0.05); // ... at a quality that keeps the image
    const sq = defenses.bitdepth.forward(x);
    expect(Array.from(sq.dataSync()).every((u) => Math.abs(u * 7 - Math.round(u * 7)) < 1e-5)).toBe(true); // 2^3 levels
    tf.dispose([j, sq]);
  }, 600_000);

  it('the 3x3 median filter equals a reference median with replicated borders', () => {
    const [n, h, w, c] = [2, 5, 6, 2];
    const rng = mulberry32(7);
    const data = Float32Array.from({ length: n * h * w * c }, () => Math.round(rng() * 1000) / 1000 + rng() * 1e-4);
    const at = (b: number, i: number, j: number, k: number) => data[((b * h + Math.min(h - 1, Math.max(0, i))) * w + Math.min(w - 1, Math.max(0, j))) * c + k];
    const expected: number[] = [];
    for (let b = 0; b < n; b++)
      for (let i = 0; i < h; i++)
        for (let j = 0; j < w; j++)
          for (let k = 0; k < c; k++) {
            const nb = [-1, 0, 1].flatMap((di) => [-1, 0, 1].map((dj) => at(b, i + di, j + dj, k))).sort((u, v) => u - v);
            expected.push(nb[4]);
          }
    const t = tf.tensor4d(data, [n, h, w, c]);
    const m = median3x3(t);
    expect(Array.from(m.dataSync())).toEqual(expected.map((v) => Math.fround(v)));
    // its gradient sends each output's weight to exactly one input pixel
    const wts = tf.randomUniform([n, h, w, c], 0, 1, 'float32', 3);
    const g = tf.grad((z: tf.Tensor) => tf.sum(tf.mul(median3x3(z as Tensor4D), wts)))(t);
    expect(g.sum().dataSync()[0]).toBeCloseTo(wts.sum().dataSync()[0], 3);
    tf.dispose([t, m, wts, g]);
  });

  it('jpeg and bit-depth pass gradients straight through (BPDA)', () => {
    const wts = tf.randomNormal(x.shape, 0, 1, 'float32', 2);
    for (const d of [jpegDefense(75), bitDepth(3)]) {
      const g = tf.grad((z: tf.Tensor) => tf.sum(tf.mul(d.forward(z as Tensor4D), wts)))(x);
      expect(Array.from(g.dataSync())).toEqual(Array.from(wts.dataSync()));
      g.dispose();
    }
    wts.dispose();
  });

  it('the full-gradient EOT attack differentiates through every diffpure step (not BPDA)', async () => {
    const p = await createPurifier({ model: 'fashion-mnist', mode: 'diffpure', tStar: 20, steps: 2, validate: false });
    const xs = tf.slice(x, [0, 0, 0, 0], [2, 28, 28, 1]) as Tensor4D;
    const y = tf.tensor1d([fixture.labels[10], fixture.labels[11]], 'int32');
    const before = tf.memory().numTensors;
    const full = adaptive(purifierDefense(p), f, { eot: 2, gradient: 'full', seed: 4 }).lossGrad(xs, y, 'ce');
    const bpda = adaptive(purifierDefense(p), f, { eot: 2, gradient: 'bpda', seed: 4 }).lossGrad(xs, y, 'ce');
    const g = full.grad.dataSync();
    expect(g.every(Number.isFinite)).toBe(true);
    expect(Math.max(...Array.from(g, Math.abs))).toBeGreaterThan(0);
    const diff = tf.tidy(() => tf.norm(tf.sub(full.grad, bpda.grad)).div(tf.norm(bpda.grad)).dataSync()[0]);
    expect(diff).toBeGreaterThan(1e-3); // the U-Net's Jacobian is in the gradient
    tf.dispose([full.grad, full.loss, full.logits, bpda.grad, bpda.loss, bpda.logits]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([xs, y]);
  }, 600_000);
});

describe('PGD adversarial training examples', () => {
  it('stay in the ball and raise the loss of the network being trained', () => {
    const model = buildCnn([28, 28, 1], 10, [4, 4, 16]);
    const { x, y } = batch(fixture, Array.from({ length: 16 }, (_, i) => i));
    const logits = trainingLogits(model);
    const xAdv = pgdTrainingExample(logits, x, y, { eps: 0.1, steps: 3 }, mulberry32(1));
    inThreatModel('Linf', 0.1, x, xAdv);
    const [clean, adv] = tf.tidy(() => [perExampleLoss('ce', logits(x), y).mean().dataSync()[0], perExampleLoss('ce', logits(xAdv), y).mean().dataSync()[0]]);
    expect(adv).toBeGreaterThan(clean);
    tf.dispose([x, y, xAdv]);
    model.dispose();
  });
});
