import { describe, it, expect } from 'vitest';
import { tf } from '../src/backend/index.js';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.js';

describe('Gaussian diffusion process (cosine schedule, T = 1000)', () => {
  const d = new GaussianDiffusion(1000);

  it('abar decreases strictly from 1 towards 0 and betas stay in (0, 0.999]', () => {
    expect(d.abar[0]).toBe(1);
    for (let t = 1; t <= d.T; t++) {
      expect(d.abar[t]).toBeLessThan(d.abar[t - 1]);
      expect(d.beta[t]).toBeGreaterThan(0);
      expect(d.beta[t]).toBeLessThanOrEqual(0.999);
    }
    expect(d.abar[d.T]).toBeLessThan(1e-4);
    // cosine schedule: half the signal variance is gone near t = T/2
    expect(Math.abs(d.abar[500] - 0.5)).toBeLessThan(0.02);
  });

  it('q_sample has mean sqrt(abar) x0 and variance 1 - abar', () => {
    const t = 300;
    const n = 20000;
    const x0 = tf.fill([n, 1, 1, 1], 0.7) as tf.Tensor4D;
    const eps = tf.randomNormal([n, 1, 1, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    const xt = d.qSample(x0, t, eps);
    const { mean, variance } = tf.moments(xt);
    const m = mean.dataSync()[0];
    const v = variance.dataSync()[0];
    expect(Math.abs(m - 0.7 * Math.sqrt(d.abar[t]))).toBeLessThan(4 * Math.sqrt((1 - d.abar[t]) / n));
    expect(Math.abs(v - (1 - d.abar[t]))).toBeLessThan(0.05 * (1 - d.abar[t]));
    tf.dispose([x0, eps, xt, mean, variance]);
  });

  it('predictX0 inverts q_sample given the true noise; one DDPM/DDIM step to 0 returns x0', () => {
    const x0 = tf.randomUniform([4, 5, 5, 1], -1, 1, 'float32', 1) as tf.Tensor4D;
    const eps = tf.randomNormal([4, 5, 5, 1], 0, 1, 'float32', 2) as tf.Tensor4D;
    const perEx = Int32Array.from([10, 200, 500, 900]);
    for (const t of [50, perEx] as const) {
      const xt = d.qSample(x0, t, eps);
      const rec = d.predictX0(xt, t, eps, false);
      expect(tf.max(tf.abs(rec.sub(x0))).dataSync()[0]).toBeLessThan(1e-3);
      tf.dispose([xt, rec]);
    }
    const xt = d.qSample(x0, 100, eps);
    const viaDdpm = d.ddpmStep(xt, 100, 0, x0, eps);
    const viaDdim = d.ddimStep(100, 0, x0, eps);
    expect(tf.max(tf.abs(viaDdpm.sub(x0))).dataSync()[0]).toBeLessThan(1e-5);
    expect(tf.max(tf.abs(viaDdim.sub(x0))).dataSync()[0]).toBeLessThan(1e-5);
    // DDIM with the true x0 and eps stays on the forward trajectory
    const x50 = d.ddimStep(100, 50, x0, eps);
    const q50 = d.qSample(x0, 50, eps);
    expect(tf.max(tf.abs(x50.sub(q50))).dataSync()[0]).toBeLessThan(1e-5);
    tf.dispose([x0, eps, xt, viaDdpm, viaDdim, x50, q50]);
  });

  it('guided DDPM step: weight 0 is the plain step, weight 1 starts from the reference diffused to t (x_t drops out)', () => {
    const shape: [number, number, number, number] = [3, 4, 4, 1];
    const [xt, xt2, x0, y, z] = [1, 2, 3, 4, 5].map((s) => tf.randomNormal(shape, 0, 1, 'float32', s) as tf.Tensor4D);
    const [t, tPrev] = [450, 360];
    const plain = d.ddpmStep(xt, t, tPrev, x0, z);
    const none = d.ddpmStep(xt, t, tPrev, x0, z, { y, scale: 0 });
    expect(tf.max(tf.abs(plain.sub(none))).dataSync()[0]).toBe(0);
    const full = d.ddpmStep(xt, t, tPrev, x0, z, { y, scale: 1 });
    const fromOther = d.ddpmStep(xt2, t, tPrev, x0, z, { y, scale: 1 });
    const ref = d.ddpmStep(y.mul(Math.sqrt(d.abar[t])) as tf.Tensor4D, t, tPrev, x0, z);
    expect(tf.max(tf.abs(full.sub(fromOther))).dataSync()[0]).toBeLessThan(1e-6);
    expect(tf.max(tf.abs(full.sub(ref))).dataSync()[0]).toBeLessThan(1e-6);
    // half way: the mean moves half way between the two
    const half = d.ddpmStep(xt, t, tPrev, x0, z, { y, scale: 0.5 });
    const mid = plain.add(full).div(2);
    expect(tf.max(tf.abs(half.sub(mid))).dataSync()[0]).toBeLessThan(1e-5);
    tf.dispose([xt, xt2, x0, y, z, plain, none, full, fromOther, ref, half, mid]);
  });

  it('sigma <-> t mapping: sqrt((1-abar_t)/abar_t) = sigma round-trips', () => {
    for (const t of [1, 17, 120, 400, 700, 950]) expect(d.tForSigma(d.sigmaAt(t))).toBe(t);
    expect(d.sigmaAt(d.tForSigma(0.5))).toBeCloseTo(0.5, 2);
  });

  it('respacing covers tStar down to 1 in the requested number of steps', () => {
    expect(d.respace(100, 10)).toEqual([100, 90, 80, 70, 60, 50, 40, 30, 20, 10]);
    expect(d.respace(5, 10)).toEqual([5, 4, 3, 2, 1]);
    expect(d.respace(300, 1)).toEqual([300]);
  });
});
