/**
 * SmoothAdv (Salman et al. 2019): the L2 attack on the smoothed soft classifier against a known answer, and the
 * trainer's use of it (the attack sees the noise the network is then trained on; the epoch is kept by validation ACR).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../src/backend/index.js';
import { loadWeights } from '../src/models/weights.js';
import { smoothAdvAdversary, smoothAdvExample } from '../src/train/adversarial.js';
import { trainClassifier, type AdversaryContext } from '../src/train/classifier.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-smoothadv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const H = 4;
const D = H * H;
/** A linear two-class model on [B,4,4,1]: logits = x W, W [16, 2]. */
function linear(w: number[][]): (x: tf.Tensor4D) => tf.Tensor2D {
  const W = tf.tensor2d(w);
  return (x) => tf.matMul(x.reshape([x.shape[0], D]), W) as tf.Tensor2D;
}

function diff(a: tf.Tensor, b: tf.Tensor): number[] {
  const t = tf.sub(a, b);
  const v = Array.from(t.dataSync());
  t.dispose();
  return v;
}

describe('smoothAdvExample', () => {
  // class 0 favours the first half of the pixels, class 1 the second half (unequal weights: a non-trivial direction)
  const w = Array.from({ length: D }, (_, i) => (i < D / 2 ? [1 + i / 8, 0] : [0, 0.5 + i / 16]));
  const u = (() => { // unit ascent direction of the loss of label 0: w_1 - w_0
    const d = w.map(([a, b]) => b - a);
    const n = Math.hypot(...d);
    return d.map((v) => v / n);
  })();

  it('moves a linear two-class model\'s input eps along w_other - w_label (the exact L2 worst case), inside [0,1]', () => {
    const before = tf.memory().numTensors;
    const f = linear(w);
    const x0 = tf.fill([1, H, H, 1], 0.5) as tf.Tensor4D;
    const y = tf.tensor1d([0], 'int32');
    for (const steps of [1, 5]) {
      const noise = tf.zeros([3, H, H, 1]) as tf.Tensor4D; // 3 draws of no noise: the smoothed model is the model
      const xa = smoothAdvExample(f, x0, y, noise, 0.2, steps);
      const d = diff(xa, x0);
      d.forEach((v, i) => expect(v).toBeCloseTo(0.2 * u[i], 4));
      expect(Math.hypot(...d)).toBeLessThanOrEqual(0.2 + 1e-6);
      tf.dispose([noise, xa]);
    }
    // near the border of [0,1] the iterate stays in range and in the ball
    const edge = tf.fill([1, H, H, 1], 0.98) as tf.Tensor4D;
    const noise = tf.zeros([1, H, H, 1]) as tf.Tensor4D;
    const xe = smoothAdvExample(f, edge, y, noise, 0.5, 10);
    const v = xe.dataSync();
    expect(Math.max(...v)).toBeLessThanOrEqual(1);
    expect(Math.hypot(...diff(xe, edge))).toBeLessThanOrEqual(0.5 + 1e-6);
    tf.dispose([x0, y, edge, noise, xe]);
    expect(tf.memory().numTensors).toBe(before + 1); // (the model's W)
  });

  it('attacks the mean softmax over the draws: a draw already wrong weighs less than the mean says, the smoothed loss rises', () => {
    const f = linear(w);
    const x0 = tf.fill([2, H, H, 1], 0.5) as tf.Tensor4D;
    const y = tf.tensor1d([0, 1], 'int32');
    const noise = tf.randomNormal([4 * 2, H, H, 1], 0, 0.3, 'float32', 5) as tf.Tensor4D;
    const smoothedLoss = (x: tf.Tensor4D) => tf.tidy(() => {
      const p = tf.softmax(f(tf.add(tf.tile(x, [4, 1, 1, 1]), noise) as tf.Tensor4D)).reshape([4, 2, 2]).mean(0) as tf.Tensor2D;
      return tf.neg(tf.log(tf.sum(tf.mul(p, tf.oneHot(y, 2)), 1))).dataSync();
    });
    const xa = smoothAdvExample(f, x0, y, noise, 0.5, 10);
    const [l0, la] = [smoothedLoss(x0), smoothedLoss(xa)];
    for (const i of [0, 1]) expect(la[i]).toBeGreaterThan(l0[i] + 0.05);
    expect(() => smoothAdvExample(f, x0, y, tf.zeros([3, H, H, 1]) as tf.Tensor4D, 0.5, 1)).toThrow(/not copies of 2 images/);
    tf.dispose([x0, y, noise, xa]);
  });
});

describe('SmoothAdv training', () => {
  it('hands the attack the trainer\'s noise seed, draws and epoch, trains on every draw and keeps the epoch by ACR, never a warm-up one', async () => {
    const lines: string[] = [];
    const seen: AdversaryContext[] = [];
    const adv = smoothAdvAdversary({ eps: 0.5, steps: 2, draws: 3, warmupEpochs: 2 });
    const spy = { ...adv, perturb: (...a: Parameters<typeof adv.perturb>) => { seen.push(a[4]!); return adv.perturb(...a); } };
    const base = {
      dataset: 'mnist' as const, out: join(dir, 's'), checkpoint: join(dir, 's.ckpt'), epochs: 2, stepsPerEpoch: 2, batchSize: 8, lr: 1e-3, seed: 3,
      widths: [4, 8, 16] as [number, number, number], noiseSigma: 0.5, acrValCount: 40, log: (l: string) => lines.push(l),
    };
    const before = tf.memory().numTensors;
    const r = await trainClassifier({ ...base, adversary: spy });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.selectedBy).toBe('acr');
    expect(seen.map((c) => [c.epoch, c.draws, c.noiseSigma])).toEqual([[0, 3, 0.5], [0, 3, 0.5], [1, 3, 0.5], [1, 3, 0.5]]);
    expect(new Set(seen.map((c) => c.noiseSeed)).size).toBe(4);
    expect(lines.filter((l) => /^epoch \d: .*ACR/.test(l))).toHaveLength(2);
    // epoch 1 trained at half eps (warm-up over 2): never the one kept, whatever its ACR
    expect(lines.filter((l) => /warm-up epoch/.test(l))).toEqual(['  (attack warm-up epoch 1 of 2: not kept)']);
    const { meta, tensors } = loadWeights<{ epoch: number; trainedWith: { adversary: Record<string, unknown> } }>(base.out);
    tf.dispose(Object.values(tensors));
    expect(meta.epoch).toBe(2);
    expect(meta.trainedWith.adversary).toMatchObject({ method: 'smoothadv-pgd', norm: 'L2', eps: 0.5, steps: 2, noiseDraws: 3, warmupEpochs: 2 });
    // with consistency the draws are shared and must agree; SmoothAdv needs noise training
    await expect(trainClassifier({ ...base, checkpoint: join(dir, 't.ckpt'), adversary: adv, consistency: { lambda: 5, draws: 2 } })).rejects.toThrow(/must be the same draws/);
    await expect(trainClassifier({ ...base, checkpoint: join(dir, 'u.ckpt'), adversary: adv, noiseSigma: undefined })).rejects.toThrow(/needs Gaussian-noise training/);
    expect(() => smoothAdvAdversary({ eps: 0.5, steps: 2, draws: 0 })).toThrow(/draws >= 1/);
  }, 120_000);
});
