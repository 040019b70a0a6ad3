/**
 * Denoised smoothing's fine-tuned base classifier (`train classifier --purify-sigma`, `certify --base dds-ft`): the
 * training batches are exactly what the dds certification base feeds its classifier, and the trainer keeps the
 * epoch by the smoothed (denoise-then-classify) classifier's validation ACR.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { loadDataset, take, batch } from '../src/data/index.js';
import { loadDiffusionModel } from '../src/purify/index.js';
import { loadWeights } from '../src/models/weights.js';
import { trainClassifier } from '../src/train/classifier.js';
import { ddsAugmenter } from '../src/train/purify-aug.js';
import { oneShotDenoiser } from '../certify/bases.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-dds-ft-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('denoised-smoothing fine-tuning', () => {
  it('feeds the classifier what the dds base does: the one-shot denoising of x + N(0, sigma^2), reproducible per seed', async () => {
    const aug = await ddsAugmenter({ model: 'mnist', sigma: 0.5 });
    const dm = await loadDiffusionModel('mnist');
    const base = oneShotDenoiser(dm.diffusion, dm.eps, { sigma: 0.5 });
    const { x } = batch(take(loadDataset('mnist', 'val'), 6), [0, 1, 2, 3, 4, 5]);
    const before = tf.memory().numTensors;
    const got = aug.purify(x as Tensor4D, 42, 0);
    const again = aug.purify(x as Tensor4D, 42, 0);
    const other = aug.purify(x as Tensor4D, 43, 0);
    const want = tf.tidy(() => base(x.add(tf.randomNormal(x.shape, 0, 0.5, 'float32', 42)) as Tensor4D) as tf.Tensor);
    const diff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(a.sub(b))).dataSync()[0]);
    expect(got.shape).toEqual(x.shape);
    expect(diff(got, want)).toBeLessThan(1e-6);
    expect(diff(got, again)).toBe(0);
    expect(diff(got, other)).toBeGreaterThan(0.01);
    expect(diff(got, x)).toBeGreaterThan(0.01); // denoised, not the input
    tf.dispose([got, again, other, want]);
    expect(tf.memory().numTensors).toBe(before);
    expect(aug.fraction).toBe(1);
    expect(aug.smoothing?.sigma).toBe(0.5);
    tf.dispose(x);
  });

  it('trains on denoised batches, keeps the epoch by the smoothed validation ACR and stores it with the weights', async () => {
    const lines: string[] = [];
    const purifyAug = await ddsAugmenter({ model: 'mnist', sigma: 0.5 });
    const r = await trainClassifier({
      dataset: 'mnist', out: join(dir, 'c'), checkpoint: join(dir, 'c.ckpt'), epochs: 1, stepsPerEpoch: 2, batchSize: 8, lr: 1e-3, seed: 2,
      widths: [4, 8, 16], purifyAug, acrValCount: 20, purifiedValCount: 20, bnCalibrationCount: 256, log: (l: string) => lines.push(l),
    });
    expect(r.selectedBy).toBe('acr');
    const epoch = lines.find((l) => l.startsWith('epoch 1:'))!;
    expect(epoch).toMatch(/smoothed: ACR [\d.]+, certified [\d.]+% \(20 images, 100 draws/);
    expect(epoch).toMatch(/after purification dds sigma=0\.5/);
    expect(r.valAcc).toBeCloseTo(Number(/ACR ([\d.]+)/.exec(epoch)![1]), 3);
    const { meta, tensors } = loadWeights<{ smoothedVal: { acr: number; images: number }; trainedWith: { purifyAug: { method: string; sigma: number } } }>(join(dir, 'c'));
    tf.dispose(Object.values(tensors));
    expect(meta.smoothedVal.images).toBe(20);
    expect(meta.trainedWith.purifyAug).toMatchObject({ method: 'dds', sigma: 0.5 });
  }, 180_000);

  it('with consistency regularization, denoises separately noised copies of each image and trains on all of them', async () => {
    const dds = await ddsAugmenter({ model: 'mnist', sigma: 0.5 });
    const seen: { rows: number; copyDiff: number; inputsTiled: number }[] = [];
    const purifyAug = {
      ...dds,
      purify: (x: Tensor4D, seed: number, u: number) => {
        const y = dds.purify(x, seed, u);
        const b = x.shape[0] / 2;
        const [x0, x1, y0, y1] = [x.slice(0, b), x.slice(b, b), y.slice(0, b), y.slice(b, b)];
        const gap = (p: tf.Tensor, q: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(p.sub(q))).dataSync()[0]);
        seen.push({ rows: x.shape[0], inputsTiled: gap(x0, x1), copyDiff: gap(y0, y1) });
        tf.dispose([x0, x1, y0, y1]);
        return y;
      },
    };
    const o = {
      dataset: 'mnist' as const, epochs: 1, stepsPerEpoch: 2, batchSize: 8, lr: 1e-3, seed: 3,
      widths: [4, 8, 16] as [number, number, number], acrValCount: 20, purifiedValCount: 20, bnCalibrationCount: 256, log: () => {},
    };
    const before = tf.memory().numTensors;
    const r = await trainClassifier({ ...o, out: join(dir, 'k'), checkpoint: join(dir, 'k.ckpt'), purifyAug, consistency: { lambda: 5 } });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.selectedBy).toBe('acr');
    // two training batches of 2 x 8 rows (then batch-norm calibration's batches): the same images twice, each copy
    // with its own noise, so different denoisings
    const training = seen.slice(0, 2);
    expect(training.map((q) => q.rows)).toEqual([16, 16]);
    for (const q of training) {
      expect(q.inputsTiled).toBe(0);
      expect(q.copyDiff).toBeGreaterThan(0.01);
    }
    const { meta, tensors } = loadWeights<{ trainedWith: { consistency: { lambda: number }; purifyAug: { method: string } } }>(join(dir, 'k'));
    tf.dispose(Object.values(tensors));
    expect(meta.trainedWith).toMatchObject({ consistency: { lambda: 5 }, purifyAug: { method: 'dds' } });
    // copies that are not all denoised cannot be compared draw for draw
    const half = await ddsAugmenter({ model: 'mnist', sigma: 0.5, fraction: 0.5 });
    await expect(trainClassifier({ ...o, out: join(dir, 'h'), checkpoint: join(dir, 'h.ckpt'), purifyAug: half, consistency: { lambda: 5 } }))
      .rejects.toThrow(/every row denoised/);
  }, 180_000);
});
