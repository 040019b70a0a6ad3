/**
 * Consistency-regularized Gaussian-noise training (Jeong & Shin 2020) for the certification baselines: the
 * loss against a float64 computation by hand, and the smoothed validation score against its closed form.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import betaQuantile from '@stdlib/stats-base-dists-beta-quantile';
import normalQuantile from '@stdlib/stats-base-dists-normal-quantile';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../src/backend/index.js';
import { loadDataset, type Dataset } from '../src/data/index.js';
import type { CnnClassifier } from '../src/models/classifier.js';
import { loadWeights } from '../src/models/weights.js';
import { consistencyLoss, smoothedValidation, trainClassifier } from '../src/train/classifier.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-consistency-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Jeong & Shin's loss in plain float64: CE over every copy + lambda * mean KL(p_bar || p_i) + eta * H(p_bar). */
function byHand(logits: number[][], labels: number[], draws: number, lambda: number, eta: number): number {
  const b = labels.length;
  const softmax = (z: number[]) => {
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const s = e.reduce((p, q) => p + q, 0);
    return e.map((v) => v / s);
  };
  const p = logits.map(softmax);
  let ce = 0;
  for (let r = 0; r < logits.length; r++) ce -= Math.log(p[r][labels[r % b]]);
  ce /= logits.length;
  let kl = 0;
  let h = 0;
  for (let i = 0; i < b; i++) {
    const copies = Array.from({ length: draws }, (_, d) => p[d * b + i]);
    const pbar = copies[0].map((_, k) => copies.reduce((s, c) => s + c[k], 0) / draws);
    for (const c of copies) kl += pbar.reduce((s, q, k) => s + q * Math.log(q / c[k]), 0);
    h -= pbar.reduce((s, q) => s + q * Math.log(q), 0);
  }
  return ce + (lambda * kl) / (b * draws) + (eta * h) / b;
}

describe('consistency loss', () => {
  const logits = [
    [2.0, -1.0, 0.5], [0.1, 0.2, 0.3], // draw 1, images 0 and 1
    [1.0, 0.0, -0.5], [-2.0, 3.0, 0.0], // draw 2
    [0.5, 0.5, 0.5], [1.5, -0.5, 2.5], // draw 3
  ];
  const labels = [0, 2];

  it('matches the float64 formula for 3 draws, and its KL term vanishes when the draws agree', () => {
    const before = tf.memory().numTensors;
    const v = tf.tidy(() => consistencyLoss(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), 3, 5, 0.5).dataSync()[0]);
    expect(v).toBeCloseTo(byHand(logits, labels, 3, 5, 0.5), 4);
    // identical copies: lambda has no effect, the loss is CE + eta * H(p)
    const same = [logits[0], logits[1], logits[0], logits[1]];
    const a = tf.tidy(() => consistencyLoss(tf.tensor2d(same), tf.tensor1d(labels, 'int32'), 2, 0, 0.5).dataSync()[0]);
    const c = tf.tidy(() => consistencyLoss(tf.tensor2d(same), tf.tensor1d(labels, 'int32'), 2, 100, 0.5).dataSync()[0]);
    expect(c).toBeCloseTo(a, 5);
    expect(c).toBeCloseTo(byHand(same, labels, 2, 0, 0.5), 4);
    // disagreeing copies cost more as lambda grows
    const l1 = tf.tidy(() => consistencyLoss(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), 3, 1, 0.5).dataSync()[0]);
    expect(v).toBeGreaterThan(l1 + 0.1);
    expect(() => tf.tidy(() => consistencyLoss(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), 4, 5, 0.5))).toThrow(/not 4 copies/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('is differentiable: the gradient pulls disagreeing copies towards each other', () => {
    const x = tf.tensor2d([[3, 0], [0, 3]]); // one image, two draws that disagree
    const g = tf.grad((z: tf.Tensor) => consistencyLoss(z as tf.Tensor2D, tf.tensor1d([0], 'int32'), 2, 10, 0))(x);
    const d = g.arraySync() as number[][];
    expect(d[1][0]).toBeLessThan(0); // the copy that says class 1 is pushed towards class 0 (the label and the other copy)
    expect(d[1][1]).toBeGreaterThan(0);
    // the copy that already says the label is pulled towards its disagreeing twin too (cross-entropy alone pushes it away)
    expect(d[0][1]).toBeLessThan(0);
    const ce = tf.grad((z: tf.Tensor) => consistencyLoss(z as tf.Tensor2D, tf.tensor1d([0], 'int32'), 2, 0, 0))(x);
    expect((ce.arraySync() as number[][])[0][1]).toBeGreaterThan(0);
    ce.dispose();
    tf.dispose([x, g]);
  });
});

describe('smoothed validation score', () => {
  const val = loadDataset('mnist', 'val');
  const threes = (() => {
    const size = 28 * 28;
    const idx = [...val.labels.keys()].filter((i) => val.labels[i] === 3).slice(0, 30);
    const images = new Float32Array(idx.length * size);
    idx.forEach((j, i) => images.set(val.images.subarray(j * size, (j + 1) * size), i * size));
    return { ...val, images, labels: Int32Array.from(idx, () => 3), count: idx.length } as Dataset;
  })();
  const always = (k: number): Pick<CnnClassifier, 'predict'> => ({ predict: (x: tf.Tensor4D) => tf.tidy(() => tf.oneHot(tf.fill([x.shape[0]], k, 'int32'), 10).mul(5) as tf.Tensor2D) });

  it('a classifier that is always right certifies every image at the radius 100 of 100 draws allow; one always wrong certifies none', async () => {
    const before = tf.memory().numTensors;
    const right = await smoothedValidation(always(3), threes, 0.5, 30, 7);
    const pA = betaQuantile(0.01, 100, 1); // one-sided Clopper-Pearson lower bound, 100 of 100, alpha 0.01
    expect(right.certified).toBe(1);
    expect(right.acr).toBeCloseTo(0.5 * normalQuantile(pA, 0, 1), 6);
    expect(right.acr).toBeCloseTo(0.5 * 1.695, 2);
    expect(await smoothedValidation(always(5), threes, 0.5, 30)).toEqual({ acr: 0, certified: 0 });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('consistency training', () => {
  it('trains, logs the smoothed validation score, keeps the epoch by ACR and stores it with the weights', async () => {
    const lines: string[] = [];
    const base = {
      dataset: 'mnist' as const, out: join(dir, 'c'), checkpoint: join(dir, 'c.ckpt'), epochs: 2, stepsPerEpoch: 3, batchSize: 8, lr: 1e-3, seed: 2,
      widths: [4, 8, 16] as [number, number, number], noiseSigma: 0.5, acrValCount: 40, log: (l: string) => lines.push(l),
    };
    const r = await trainClassifier({ ...base, consistency: { lambda: 5 } });
    expect(r.selectedBy).toBe('acr');
    const epochs = lines.filter((l) => l.startsWith('epoch '));
    expect(epochs).toHaveLength(2);
    const acrs = epochs.map((l) => Number(/ACR ([\d.]+)/.exec(l)![1]));
    expect(r.valAcc).toBeCloseTo(Math.max(...acrs), 3);
    const { meta, tensors } = loadWeights<{ smoothedVal: { acr: number; images: number; draws: number } }>(base.out);
    tf.dispose(Object.values(tensors));
    expect(meta.smoothedVal).toMatchObject({ images: 40, draws: 100 });
    expect(meta.smoothedVal.acr).toBeCloseTo(r.valAcc, 6);
    await expect(trainClassifier({ ...base, noiseSigma: undefined, checkpoint: join(dir, 'd.ckpt'), consistency: { lambda: 5 } })).rejects.toThrow(/needs Gaussian-noise training/);
    await expect(trainClassifier({ ...base, checkpoint: join(dir, 'e.ckpt'), consistency: { lambda: 5, draws: 1 } })).rejects.toThrow(/draws >= 2/);
  }, 120_000);
});
