/**
 * The classifier behind `mode: 'restore'` fine-tuned on what restoration hands it (`train classifier --restore-aug`):
 * the augmenter damages rows with random degradation sequences and restores them with the shipped restoration model,
 * reproducibly per seed, and the trainer keeps the epoch by clean and restored validation accuracy.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadFixture, take } from '../src/data/index.js';
import { createPurifier } from '../src/purify/index.js';
import { loadWeights } from '../src/models/weights.js';
import { trainClassifier } from '../src/train/classifier.js';
import { restoreAugmenter } from '../src/train/purify-aug.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-restore-aug-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const diff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(a.sub(b))).dataSync()[0]);

describe('restore-aware classifier training', () => {
  it('damages and restores rows, reproducibly per seed, and restores clean validation images exactly as purify() does', async () => {
    const aug = await restoreAugmenter({ model: 'fashion-mnist', cleanFraction: 0 });
    const restorer = await createPurifier({ model: 'fashion-mnist', mode: 'restore', validate: false });
    const { x } = batch(take(loadFixture(), 8), [0, 1, 2, 3, 4, 5, 6, 7]);
    const before = tf.memory().numTensors;
    const got = aug.purify(x as Tensor4D, 42, 0);
    const again = aug.purify(x as Tensor4D, 42, 0);
    const other = aug.purify(x as Tensor4D, 43, 0);
    const restoredClean = restorer.purify(x as Tensor4D) as tf.Tensor;
    const viaValidate = aug.validate['restored clean'](x as Tensor4D);
    expect(got.shape).toEqual(x.shape);
    expect(diff(got, again)).toBe(0);
    expect(diff(got, other)).toBeGreaterThan(0.01);
    // damaged before the restoration: not what restoring the clean batch gives
    expect(diff(got, restoredClean)).toBeGreaterThan(0.05);
    expect(diff(viaValidate, restoredClean)).toBeLessThan(1e-6);
    const [lo, hi] = tf.tidy(() => [got.min().dataSync()[0], got.max().dataSync()[0]]);
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    tf.dispose([got, again, other, restoredClean, viaValidate]);
    expect(tf.memory().numTensors).toBe(before);
    expect(aug).toMatchObject({ method: 'restore', restorer: 'cold', fraction: 0.5 });
    tf.dispose(x);
  });

  it('with cleanFraction 1 only restores (no degradation), and refuses settings out of range', async () => {
    const aug = await restoreAugmenter({ model: 'fashion-mnist', cleanFraction: 1 });
    const restorer = await createPurifier({ model: 'fashion-mnist', mode: 'restore', validate: false });
    const { x } = batch(take(loadFixture(), 4), [0, 1, 2, 3]);
    const got = aug.purify(x as Tensor4D, 7, 0);
    const want = restorer.purify(x as Tensor4D) as tf.Tensor;
    expect(diff(got, want)).toBeLessThan(1e-6);
    tf.dispose([got, want, x]);
    await expect(restoreAugmenter({ model: 'fashion-mnist', fraction: 0 })).rejects.toThrow(RangeError);
    await expect(restoreAugmenter({ model: 'fashion-mnist', group: 0 })).rejects.toThrow(/group/);
    await expect(restoreAugmenter({ model: 'fashion-mnist', cleanFraction: 1.5 })).rejects.toThrow(/cleanFraction/);
    // MNIST ships no restoration model
    await expect(restoreAugmenter({ model: 'mnist' })).rejects.toThrow(/restor/);
  });

  it('trains on restored batches and keeps the epoch by the mean of clean and restored validation accuracies', async () => {
    const lines: string[] = [];
    // (MNIST's digits, always installed, through the Fashion-MNIST restoration model: the mechanics are the same)
    const purifyAug = await restoreAugmenter({ model: 'fashion-mnist' });
    const r = await trainClassifier({
      dataset: 'mnist', out: join(dir, 'c'), checkpoint: join(dir, 'c.ckpt'), epochs: 1, stepsPerEpoch: 2, batchSize: 8, lr: 1e-3, seed: 2,
      widths: [4, 8, 16], purifyAug, purifiedValCount: 20, bnCalibrationCount: 256, log: (l: string) => lines.push(l),
    });
    expect(r.selectedBy).toBe('clean+purified');
    const epoch = lines.find((l) => l.startsWith('epoch 1:'))!;
    const m = /val acc ([\d.]+)%, after purification restored corrupted ([\d.]+)%, restored clean ([\d.]+)% \(20 images\)/.exec(epoch);
    expect(m).not.toBeNull();
    const [clean, corrupted, restored] = m!.slice(1).map(Number);
    expect(100 * r.valAcc).toBeCloseTo((clean + (corrupted + restored) / 2) / 2, 1);
    const { meta, tensors } = loadWeights<{ trainedWith: { purifyAug: Record<string, unknown> } }>(join(dir, 'c'));
    tf.dispose(Object.values(tensors));
    expect(meta.trainedWith.purifyAug).toMatchObject({ method: 'restore', restorer: 'cold', fraction: 0.5, group: 4, maxLength: 3 });
    expect(meta.trainedWith.purifyAug.restoration).toMatch(/^[0-9a-f]{16}$/); // the restoration weights' hash, not "missing"
  });
});
