/**
 * The restoration model (issue 7) at smoke scale: the restoration process's algebra, the trainer
 * (loss goes down, resume continues exactly), `mode: 'restore'` on a tiny trained model (shape, range,
 * seeds, typed errors), and, with the shipped models/fashion-mnist/restore.*, what users rely on: restore
 * improves every degradation and leaves clean images nearly alone.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadFixture, subset } from '../src/data/index.js';
import { GaussianDiffusion, type EpsModel } from '../src/diffusion/gaussian-diffusion.js';
import { coldSchedule, LEVEL_FLOOR, levelSteps, residualLevels, restorationPair, restoreCold, restoreX0 } from '../src/diffusion/restoration.js';
import { saveDiffusion } from '../src/models/diffusion-model.js';
import { initUNet, unetForward, type UNetConfig } from '../src/models/unet.js';
import { loadWeights } from '../src/models/weights.js';
import { createPurifier, PurifyError, Purifier, loadClassifier, loadDiffusionModel } from '../src/purify/index.js';
import { degradationsFor, getDegradation } from '../src/degradations/index.js';
import { psnrPerImage } from '../src/bench/similarity.js';
import { parseJsonOptions } from '../src/middleware/schemas.js';
import { restoreBatch, trainRestore, unetLoss } from '../src/train/restore.js';
import { mulberry32 } from '../src/util/rng.js';
import { adaptive } from '../attacks/index.js';
import { describeDefense, parseDefense, purifierDefense, purifierMode } from '../attacks/defenses.js';

const fixture = loadFixture();
const d = new GaussianDiffusion(1000);
const TINY: UNetConfig = { imageChannels: 1, ch: 8, mult: [1, 1], groups: 4, tembDim: 32 };
// smoke-scale training learns noise fastest; the full trainer draws from every degradation
const NOISES = ['gaussian-noise', 'uniform-noise'] as const;
// ~10 s each on an idle 2-core machine; the limit only guards against a loaded one
const SLOW = 600_000;
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => a.sub(b).abs().max().dataSync()[0]);

describe('restoration process (src/diffusion/restoration.ts)', () => {
  it('a Gaussian-noised image is an ordinary DDPM sample: same network input, same target', () => {
    const t = Int32Array.from([20, 150, 400]);
    const x0 = tf.randomUniform([3, 28, 28, 1], -1, 1, 'float32', 1) as Tensor4D;
    const n = tf.randomNormal([3, 28, 28, 1], 0, 1, 'float32', 2) as Tensor4D;
    const y = tf.tidy(() => x0.add(n.mul(tf.tensor4d(Array.from(t, (s) => d.sigmaAt(s)), [3, 1, 1, 1]))) as Tensor4D);
    const { xIn, eps } = restorationPair(d, y, x0, t);
    const xt = d.qSample(x0, t, n);
    expect(maxDiff(xIn, xt)).toBeLessThan(1e-5);
    expect(maxDiff(eps, n)).toBeLessThan(1e-4);
    tf.dispose([x0, n, y, xIn, eps, xt]);
  });

  it('levels: RMS of the residual on the model scale, mapped to the step with that noise-to-signal ratio', () => {
    const x0 = new Float32Array(2 * 784).fill(0.5);
    const y = x0.map((v, i) => (i < 784 ? v + 0.1 : v));
    const lv = residualLevels(y, x0, 2);
    expect(lv[0]).toBeCloseTo(0.2, 5);
    expect(lv[1]).toBe(0);
    const t = levelSteps(d, [0, LEVEL_FLOOR, 0.05, 0.2, 0.5, 1]);
    expect(Array.from(t.subarray(0, 2))).toEqual([1, 1]); // clean -> t = 1
    for (let i = 1; i < t.length; i++) expect(t[i]).toBeGreaterThanOrEqual(t[i - 1]);
    expect(t[3]).toBe(d.tForSigma(0.2));
  });

  it('cold restoration (Algorithm 2) with a perfect network returns x0 in any number of steps; 1 step = the one-shot x0', () => {
    const x0 = tf.randomUniform([2, 28, 28, 1], -0.9, 0.9, 'float32', 3) as Tensor4D;
    const y = tf.tidy(() => x0.add(tf.randomNormal([2, 28, 28, 1], 0, 0.2, 'float32', 4)).clipByValue(-1, 1) as Tensor4D);
    // the oracle predicts exactly the residual toward x0 at whatever level it is asked
    const oracle: EpsModel = (xIn, tt) => tf.tidy(() => {
      const ts = Array.from(tt.dataSync());
      const a = tf.tensor4d(ts.map((s) => 1 / Math.sqrt(d.abar[s])), [ts.length, 1, 1, 1]);
      const inv = tf.tensor4d(ts.map((s) => 1 / d.sigmaAt(s)), [ts.length, 1, 1, 1]);
      return xIn.mul(a).sub(x0).mul(inv) as Tensor4D;
    });
    const t = Int32Array.from([120, 1]);
    for (const steps of [1, 3, 7]) {
      const z = restoreCold(d, oracle, y, t, steps);
      expect(maxDiff(z, x0)).toBeLessThan(1e-3);
      z.dispose();
    }
    const a = restoreCold(d, oracle, y, t, 1);
    const b = restoreX0(d, oracle, y, t);
    expect(maxDiff(a, b)).toBeLessThan(1e-6);
    const s = coldSchedule(Int32Array.from([100, 1]), 4);
    expect(Array.from(s[0])).toEqual([100, 1]);
    expect(Array.from(s[4])).toEqual([0, 0]);
    for (let j = 1; j < s.length; j++) for (let i = 0; i < 2; i++) expect(s[j][i]).toBeLessThanOrEqual(s[j - 1][i]);
    tf.dispose([x0, y, a, b]);
  });
});

describe('restoration trainer (smoke scale: a tiny U-Net, 8 fixture images)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'advpurify-restore-'));
  const train = subset(fixture, Array.from({ length: 8 }, (_, i) => i));
  const val = subset(fixture, Array.from({ length: 8 }, (_, i) => 900 + i));
  const run = (name: string, steps: number, lines: string[] = []) =>
    trainRestore({
      dataset: 'fashion-mnist', init: 'random', unet: TINY, out: join(dir, name, 'restore'), checkpoint: join(dir, name, 'restore.ckpt'),
      steps, batchSize: 8, lr: 5e-3, warmup: 1, emaDecay: 0, seed: 5, checkpointEvery: 4, validateEvery: 8, validateCount: 8,
      restoreFraction: 0.75, names: NOISES, cleanFraction: 0, level: { imageChannels: 1, ch: 4 }, train, val, log: (l) => lines.push(l),
    });
  let fixed: Awaited<ReturnType<typeof restoreBatch>>;

  beforeAll(async () => {
    // a fixed restoration batch (every row degraded): 4 draws of each training image
    const x0 = new Float32Array(32 * 784);
    for (let i = 0; i < 4; i++) x0.set(train.images, i * 8 * 784);
    fixed = await restoreBatch(d, x0, [32, 28, 28, 1], mulberry32(99), { restoreFraction: 1, cleanFraction: 0, names: NOISES });
  });

  it('a few steps lower the restoration loss on a fixed batch; the weights file is a restoration model', async () => {
    const lossWith = (params: Record<string, tf.Tensor>) => tf.tidy(() => unetLoss(d, (x, t) => unetForward(params, TINY, x, t), fixed).dataSync()[0]);
    const init = initUNet(TINY, 5);
    const before = lossWith(init);
    tf.dispose(Object.values(init));
    const lines: string[] = [];
    const r = await run('a', 8, lines);
    expect(r.step).toBe(8);
    const { meta, tensors } = loadWeights<{ restore: { validation: unknown[] }; unet: UNetConfig }>(join(dir, 'a', 'restore'));
    const after = lossWith(tensors);
    tf.dispose(Object.values(tensors));
    expect(after).toBeLessThan(0.95 * before); // measured: 0.99 -> 0.78 after 8 steps
    expect(meta.unet).toEqual(TINY);
    expect(meta.restore.validation).toHaveLength(1); // both designs measured on the validation images at step 8
    expect(lines.some((l) => /validation PSNR .* \(a\) cold .* \(b\) x0\+diffpure/.test(l))).toBe(true);
  }, SLOW);

  it('resumes from its rolling checkpoint at the right step and ends where an uninterrupted run ends', async () => {
    await run('b', 4);
    const lines: string[] = [];
    const r = await run('b', 8, lines);
    expect(lines[0]).toMatch(/resumed .*restore\.ckpt at step 4/);
    expect(r.step).toBe(8);
    const a = loadWeights(join(dir, 'a', 'restore')).tensors;
    const b = loadWeights(join(dir, 'b', 'restore')).tensors;
    for (const k of Object.keys(a)) expect(maxDiff(a[k], b[k]), k).toBeLessThan(1e-3);
    tf.dispose([...Object.values(a), ...Object.values(b)]);
    const meta = JSON.parse(readFileSync(join(dir, 'b', 'restore.ckpt.json'), 'utf8')).meta;
    expect(meta.step).toBe(8);
  }, SLOW);

  it("mode 'restore': shape, range, seeds, both designs, no leaked tensors, differentiable", async () => {
    const model = join(dir, 'a', 'restore');
    const p = await createPurifier({ model, mode: 'restore', restorer: 'x0', tStar: 20, steps: 2 });
    const cold = await createPurifier({ model, mode: 'restore', restorer: 'cold', steps: 3 });
    const { x, y } = batch(fixture, [10, 11, 12]);
    const noisy = tf.tidy(() => x.add(tf.randomNormal(x.shape, 0, 0.2, 'float32', 7)).clipByValue(0, 1) as Tensor4D);
    const before = tf.memory().numTensors;
    const a = p.purify(noisy, { seed: 4 });
    const b = p.purify(noisy, { seed: 4 });
    const c = p.purify(noisy, { seed: 5 });
    const e = cold.purify(noisy);
    const f = cold.purify(noisy);
    for (const out of [a, e]) {
      expect(out.shape).toEqual([3, 28, 28, 1]);
      const [lo, hi] = tf.tidy(() => [out.min().dataSync()[0], out.max().dataSync()[0]]);
      expect(lo).toBeGreaterThanOrEqual(0);
      expect(hi).toBeLessThanOrEqual(1);
    }
    expect(maxDiff(a, b)).toBe(0);
    expect(maxDiff(a, c)).toBeGreaterThan(1e-3); // the diffpure pass is random
    expect(maxDiff(e, f)).toBe(0); // design (a) is deterministic
    tf.dispose([a, b, c, e, f]);
    expect(tf.memory().numTensors).toBe(before);
    const g = tf.grad((inp: tf.Tensor) => cold.purify(inp as Tensor4D).mean())(noisy);
    expect(Number.isFinite(g.abs().sum().dataSync()[0])).toBe(true);
    tf.dispose([x, y, noisy, g]);
  });

  it("the attack suite's restore defences: x0 is randomized (EOT), cold deterministic, full gradients finite", async () => {
    expect(parseDefense('restore').name).toBe('restore');
    expect(purifierMode(parseDefense('restore-bpda').name)).toBe('restore');
    expect(describeDefense('restore')).toMatch(/full gradient .*restore \(cold/); // the default design
    expect(describeDefense('restore', { restorer: 'x0' })).toMatch(/full gradient .*restore \(x0/);
    expect(describeDefense('restore-bpda', { restorer: 'cold' })).toMatch(/BPDA .*restore \(cold/);
    const model = join(dir, 'a', 'restore');
    const x0 = purifierDefense(await createPurifier({ model, mode: 'restore', restorer: 'x0', tStar: 20, steps: 2 }));
    const cold = purifierDefense(await createPurifier({ model, mode: 'restore', restorer: 'cold', steps: 2 }));
    expect([x0.randomized, cold.randomized]).toEqual([true, false]);
    const { x, y } = batch(fixture, [10, 11]);
    const before = tf.memory().numTensors;
    const clf = (v: Tensor4D) => tf.tidy(() => v.reshape([2, 784]).slice([0, 0], [2, 10]).mul(5) as tf.Tensor2D); // any differentiable logits
    for (const d of [x0, cold]) {
      const r = adaptive(d, clf, { eot: 2, seed: 1 }).lossGrad(x, y, 'ce');
      const s = tf.tidy(() => r.grad.abs().sum().dataSync()[0]);
      expect(Number.isFinite(s) && s > 0).toBe(true);
      tf.dispose([r.loss, r.grad, r.logits]);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
  }, SLOW);

  it("mode 'restore' without restoration weights, or with a bad restorer: typed errors", async () => {
    const codeOf = async (f: () => unknown) => {
      try {
        await f();
      } catch (e) {
        expect(e).toBeInstanceOf(PurifyError);
        return [(e as PurifyError).code, (e as PurifyError).field, (e as PurifyError).message];
      }
      return undefined;
    };
    // a model directory that holds diffusion weights only (what ships before `train restore` has run)
    const only = join(dir, 'diffusion-only');
    const params = initUNet(TINY, 1);
    saveDiffusion(join(only, 'diffusion'), params, { kind: 'ddpm-unet', dataset: 'fashion-mnist', T: 1000, schedule: 'cosine', unet: TINY });
    tf.dispose(Object.values(params));
    const [code, field, message] = (await codeOf(() => createPurifier({ model: join(only, 'diffusion'), mode: 'restore' })))!;
    expect([code, field]).toEqual(['UNKNOWN_MODEL', 'mode']);
    expect(message).toMatch(/restore\.json.*advpurify train restore/);
    expect((await codeOf(() => createPurifier({ model: join(only, 'diffusion'), mode: 'restore', restorer: 'magic' as 'x0' })))?.slice(0, 2)).toEqual(['BAD_OPTION', 'restorer']);
    // a diffusion model without a level net, handed to a Purifier directly
    const dm = await loadDiffusionModel(join(only, 'diffusion'));
    const x = tf.zeros([1, 28, 28, 1]) as Tensor4D;
    expect((await codeOf(() => new Purifier(dm, { mode: 'restore' }).purify(x)))?.[0]).toBe('UNKNOWN_MODEL');
    x.dispose();
    // the middleware's schema takes the mode and the design, and rejects unknown designs
    expect(parseJsonOptions({ mode: 'restore', restorer: 'cold' })).toEqual({ mode: 'restore', restorer: 'cold' });
    expect(() => parseJsonOptions({ mode: 'restore', restorer: 'magic' })).toThrow(/restorer/);
  });
});

describe('the shipped restoration model (models/fashion-mnist/restore.*, default design)', () => {
  // fixture images 0-31, every degradation at severity 3 with odd seeds (the trainer draws even ones)
  const idx = Array.from({ length: 32 }, (_, i) => i);
  const psnr = (a: Tensor4D, b: Tensor4D) => { const p = psnrPerImage(a, b); return p.reduce((s, v) => s + v, 0) / p.length; };

  it('improves PSNR on every degradation at severity 3 and leaves clean images nearly alone', async () => {
    const p = await createPurifier({ mode: 'restore' });
    const clf = await loadClassifier('fashion-mnist');
    const { x, y } = batch(fixture, idx);
    const before = tf.memory().numTensors;
    const worse: string[] = [];
    for (const [k, name] of degradationsFor(1).entries()) {
      const { y: bad } = await getDegradation(name).apply(x, 3, 2 * k + 1);
      const out = p.purify(bad, { seed: k });
      const [pb, pr] = [psnr(bad, x), psnr(out, x)];
      if (!(pr > pb)) worse.push(`${name}: ${pb.toFixed(2)} -> ${pr.toFixed(2)} dB`);
      tf.dispose([bad, out]);
    }
    expect(worse).toEqual([]);
    // "don't change what is fine": clean images come back close, with the same predictions
    const out = p.purify(x, { seed: 1 });
    expect(psnr(out, x)).toBeGreaterThan(40);
    const agree = tf.tidy(() => clf.predict(out).argMax(-1).equal(clf.predict(x).argMax(-1)).mean().dataSync()[0]);
    expect(agree).toBeGreaterThanOrEqual(0.95);
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
  }, SLOW);
});
