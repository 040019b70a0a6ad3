/**
 * Denoised smoothing's denoiser fine-tuned through a frozen classifier (`advpurify train denoiser`): the network
 * changes and the classifier does not, validation picks the weights (step 0 = the diffusion model it started
 * from), an interrupted run resumes to the same weights, and bad options are refused. On the shipped MNIST models.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../src/backend/index.js';
import { loadDataset, take } from '../src/data/index.js';
import { loadWeights } from '../src/models/weights.js';
import { trainDenoiser, type TrainDenoiserOptions } from '../src/train/denoiser.js';
import { DiffusionModel, loadDiffusion, type DiffusionMeta } from '../src/models/diffusion-model.js';
import { initUNet, studentConfig, type Params } from '../src/models/unet.js';
import { oneShotDenoiser } from '../certify/bases.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-denoiser-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const train = take(loadDataset('mnist', 'train'), 64);
const val = loadDataset('mnist', 'val');
const base = (name: string, more: Partial<TrainDenoiserOptions> = {}): TrainDenoiserOptions => ({
  dataset: 'mnist', init: 'models/mnist/diffusion', classifier: 'models/mnist/classifier-dds0.5', sigma: 0.5,
  out: join(dir, name), checkpoint: join(dir, `${name}.ckpt`), steps: 2, batchSize: 4, lr: 0.05, seed: 5, // (a large rate: Adam moves each weight ~lr * step / 50 in the warm-up)
  validateEvery: 0, train, val, log: () => {}, ...more,
});

const maxDiff = (a: Record<string, tf.Tensor>, b: Record<string, tf.Tensor>) =>
  Math.max(...Object.keys(a).map((k) => tf.tidy(() => tf.max(tf.abs(a[k].sub(b[k]))).dataSync()[0])));

describe('train denoiser', () => {
  it('trains the U-Net through the frozen classifier, leaves the classifier file alone and leaks no tensors', async () => {
    const clfBefore = readFileSync('models/mnist/classifier-dds0.5.bin');
    const before = tf.memory().numTensors;
    const r = await trainDenoiser(base('a', { steps: 3 }));
    expect(tf.memory().numTensors).toBe(before);
    expect(r.step).toBe(3);
    expect(Number.isFinite(r.lossAvg)).toBe(true);
    expect(readFileSync('models/mnist/classifier-dds0.5.bin').equals(clfBefore)).toBe(true);
    const init = loadWeights('models/mnist/diffusion');
    const got = loadWeights<{ kind: string; denoiser: { sigma: number; tStar: number; step: number; selected: string } }>(join(dir, 'a'));
    expect(got.meta.kind).toBe('ddpm-unet');
    expect(got.meta.denoiser).toMatchObject({ sigma: 0.5, step: 3, selected: 'last step' });
    expect(got.meta.denoiser.tStar).toBeGreaterThan(0);
    expect(Object.keys(got.tensors).sort()).toEqual(Object.keys(init.tensors).sort());
    expect(maxDiff(got.tensors, init.tensors)).toBeGreaterThan(3e-3); // trained: ~(1 + 2 + 3) / 50 * lr
    tf.dispose([...Object.values(got.tensors), ...Object.values(init.tensors)]);
  }, 120_000);

  it('resumes an interrupted run to the weights an uninterrupted one reaches', async () => {
    await trainDenoiser(base('straight', { steps: 4, checkpointEvery: 2 }));
    await trainDenoiser(base('resumed', { steps: 2, checkpointEvery: 2 }));
    const lines: string[] = [];
    await trainDenoiser(base('resumed', { steps: 4, checkpointEvery: 2, log: (l) => lines.push(l) }));
    expect(lines.some((l) => l.startsWith('resumed ') && l.includes('at step 2'))).toBe(true);
    // the float32 weights in the final checkpoints (the float16 files can round a last-bit difference apart: Adam's
    // bias correction is restored as beta^(t+1) where the running optimizer multiplied beta in t times)
    const net = (name: string) => {
      const { tensors } = loadWeights(join(dir, `${name}.ckpt`));
      const out: Record<string, tf.Tensor> = {};
      for (const [k, v] of Object.entries(tensors)) if (k.startsWith('model/net/')) out[k.slice(10)] = v; else v.dispose();
      return out;
    };
    const a = net('straight');
    const b = net('resumed');
    const init = loadWeights('models/mnist/diffusion');
    expect(Object.keys(a).length).toBe(Object.keys(init.tensors).length);
    expect(maxDiff(a, init.tensors)).toBeGreaterThan(5e-3); // four steps moved the weights ...
    expect(maxDiff(a, b)).toBeLessThan(1e-5); // ... and the resumed run moved them the same way
    tf.dispose([...Object.values(a), ...Object.values(b), ...Object.values(init.tensors)]);
  }, 180_000);

  it('measures the smoothed validation ACR from step 0 and keeps the best weights by it', async () => {
    const lines: string[] = [];
    const r = await trainDenoiser(base('v', { steps: 2, validateEvery: 2, acrValCount: 6, log: (l) => lines.push(l) }));
    expect(lines[0]).toMatch(/^step 0: validation ACR [\d.]+, certified [\d.]+% \(6 images, 100 draws\); saved /);
    expect(lines.some((l) => l.startsWith('step 2: validation ACR'))).toBe(true);
    expect(r.initialAcr).toBeGreaterThan(0); // the shipped pair certifies some of these digits
    expect(r.bestAcr).toBeGreaterThanOrEqual(r.initialAcr!);
    const { meta, tensors } = loadWeights<{ denoiser: { selected: string; valAcr: number; initialAcr: number; valImages: number } }>(join(dir, 'v'));
    tf.dispose(Object.values(tensors));
    expect(meta.denoiser).toMatchObject({ selected: 'validation ACR', valImages: 6 });
    expect(meta.denoiser.valAcr).toBeCloseTo(r.bestAcr!, 6);
    expect(meta.denoiser.initialAcr).toBeCloseTo(r.initialAcr!, 6);
  }, 180_000);

  it('distils a smaller student from the diffusion model: its one-shot x0 moves towards the teacher\'s, in a file of its own shape', async () => {
    const before = tf.memory().numTensors;
    const o = base('student', { steps: 40, batchSize: 8, lr: 0.01, studentCh: 8, distill: 1, cls: 0 });
    await trainDenoiser(o);
    expect(tf.memory().numTensors).toBe(before);
    const student = loadDiffusion(join(dir, 'student'));
    const teacher = loadDiffusion('models/mnist/diffusion');
    expect(student.meta.unet).toEqual(studentConfig(teacher.meta.unet, 8));
    expect(student.meta.unet).toMatchObject({ ch: 8, groups: 4 });
    expect((student.meta as DiffusionMeta & { denoiser: object }).denoiser).toMatchObject({ studentCh: 8, distill: 1, cls: 0 });
    const fresh = new DiffusionModel(initUNet(student.meta.unet, o.seed) as Params, student.meta); // where training started
    // on validation digits and noise the run never saw
    const x = tf.tidy(() => { const v = take(val, 16); return tf.tensor4d(v.images, [16, 28, 28, 1]).add(tf.randomNormal([16, 28, 28, 1], 0, 0.5, 'float32', 99)); });
    const x0 = (m: DiffusionModel) => oneShotDenoiser(m.diffusion, m.eps, { sigma: 0.5 })(x as tf.Tensor4D);
    const gap = (m: DiffusionModel) => tf.tidy(() => x0(m).sub(x0(teacher)).square().mean().dataSync()[0]);
    const [start, end] = [gap(fresh), gap(student)];
    expect(end).toBeLessThan(0.5 * start); // (measured: 0.105 -> 0.014)
    tf.dispose(x);
    for (const m of [fresh, student, teacher]) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  }, 180_000);

  it('refuses bad options with a clear error before training', async () => {
    await expect(trainDenoiser(base('bad', { cls: 0 }))).rejects.toThrow(/nothing to train on/);
    await expect(trainDenoiser(base('bad', { studentCh: 3, distill: 1 }))).rejects.toThrow(/studentCh must be an integer in \[4, 256\]/);
    await expect(trainDenoiser(base('bad', { sigma: 0 }))).rejects.toThrow(/sigma must be in \(0, 2\]/);
    await expect(trainDenoiser(base('bad', { draws: 1 }))).rejects.toThrow(/draws must be an integer >= 2/);
    await expect(trainDenoiser(base('bad', { init: 'models/fashion-mnist/diffusion' }))).rejects.toThrow(/not a mnist diffusion model/);
    await expect(trainDenoiser(base('bad', { dataset: 'fashion-mnist', init: 'models/fashion-mnist/restore' }))).rejects.toThrow(/restoration model/);
    await expect(trainDenoiser(base('bad', { classifier: join(dir, 'nothing') }))).rejects.toThrow(/no classifier weights at .*nothing\.json/);
    const before = tf.memory().numTensors;
    await expect(trainDenoiser(base('bad', { classifier: 'models/fashion-mnist/classifier' }))).rejects.toThrow(/a fashion-mnist classifier, not mnist/);
    expect(tf.memory().numTensors).toBe(before);
  }, 60_000);
});
