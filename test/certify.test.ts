/**
 * Randomized smoothing (certify/core.ts, certify/bases.ts) against answers known in closed form.
 * Every Monte-Carlo test runs under fixed seeds; its threshold is set so that a correct implementation
 * fails it with probability well under 1e-3, while the usual mistakes (point estimate instead of a
 * confidence bound, one-sided test in PREDICT, counting against n instead of the top two) fail it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import normalCdf from '@stdlib/stats-base-dists-normal-cdf';
import normalQuantile from '@stdlib/stats-base-dists-normal-quantile';
import { initBackend, tf, type Tensor4D } from '../src/backend/index.js';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.js';
import { ABSTAIN, type BaseClassifier, Smooth, certify, lowerConfidenceBound, maxCertifiableRadius, predict } from '../certify/core.js';
import { denoisedBase, noisyBase, sigmaToT, tToSigma } from '../certify/bases.js';

beforeAll(async () => {
  await initBackend();
});

/** log P(X >= k) for X ~ Binomial(n, p), summed in log space (independent of @stdlib). */
function binomUpperTail(k: number, n: number, p: number): number {
  let logC = 0; // log C(n, k)
  for (let i = 1; i <= k; i++) logC += Math.log((n - k + i) / i);
  let total = 0;
  let logTerm = logC + k * Math.log(p) + (n - k) * Math.log1p(-p);
  for (let j = k; j <= n; j++) {
    total += Math.exp(logTerm);
    logTerm += Math.log((n - j) / (j + 1)) + Math.log(p) - Math.log1p(-p);
  }
  return total;
}

/** Clopper-Pearson one-sided lower bound by bisection: the p with P(X >= k | p) = alpha. */
function referenceLcb(k: number, n: number, alpha: number): number {
  let lo = 0;
  let hi = 1;
  for (let it = 0; it < 60; it++) {
    const mid = (lo + hi) / 2;
    if (binomUpperTail(k, n, mid) < alpha) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

const pixel = (v: number): Tensor4D => tf.tensor4d([v], [1, 1, 1, 1]);

/** f(z) = 1 iff w.z > b, as logits [B, 2]: under N(0, sigma^2) noise pA = Phi(margin / (sigma ||w||)). */
function linearBase(w: number[], b: number): BaseClassifier {
  return (z) =>
    tf.tidy(() => {
      const s = z.reshape([z.shape[0], w.length]).matMul(tf.tensor2d(w, [w.length, 1])).sub(b);
      return tf.concat([s.neg(), s], 1);
    });
}

/** Same rule on a 1-pixel image, as labels (exercises the label path). */
const thresholdBase = (b: number): BaseClassifier => (z) => tf.tidy(() => z.reshape([-1]).greater(b).cast('int32'));

describe('lowerConfidenceBound (Clopper-Pearson, one-sided)', () => {
  it('matches bisection on the binomial tail and the textbook values', () => {
    expect(lowerConfidenceBound(990, 1000, 0.001)).toBeCloseTo(referenceLcb(990, 1000, 0.001), 7);
    expect(lowerConfidenceBound(990, 1000, 0.001)).toBeCloseTo(0.97604, 4);
    expect(lowerConfidenceBound(70, 100, 0.05)).toBeCloseTo(referenceLcb(70, 100, 0.05), 7);
    // 90% two-sided Clopper-Pearson interval for 5/10 is (0.2224, 0.7776)
    expect(lowerConfidenceBound(5, 10, 0.05)).toBeCloseTo(0.2224, 4);
    // k = n: P(X = n | p) = p^n = alpha
    expect(lowerConfidenceBound(1000, 1000, 0.001)).toBeCloseTo(0.001 ** (1 / 1000), 12);
    expect(lowerConfidenceBound(0, 1000, 0.001)).toBe(0);
    expect(() => lowerConfidenceBound(5, 4, 0.01)).toThrow(RangeError);
  });

  it('maxCertifiableRadius is sigma * PhiInv(alpha^(1/n))', () => {
    expect(maxCertifiableRadius(0.25, 100_000, 0.001)).toBeCloseTo(0.25 * 3.8, 1); // Cohen et al.: ~4 sigma
    expect(maxCertifiableRadius(0.5, 1000, 0.001)).toBeCloseTo(0.5 * normalQuantile(0.001 ** 0.001, 0, 1), 12);
    // by hand, the n = 10,000 and alpha = 0.001: 0.001^(1/10000) = 0.99930946, PhiInv of it = 3.198578
    expect(maxCertifiableRadius(0.5, 10_000, 0.001)).toBeCloseTo(1.599289, 5);
    expect(maxCertifiableRadius(1.0, 10_000, 0.001)).toBeCloseTo(3.198578, 5);
  });
});

describe('CERTIFY', () => {
  const w = [1, 2, -1, 0.5];
  const wNorm = Math.hypot(...w);
  const sigma = 0.5;
  const image = () => tf.tensor4d([0.3, 0.6, 0.2, 0.8], [1, 2, 2, 1]);
  const wx = 0.3 + 1.2 - 0.2 + 0.4;
  const b = wx - sigma * wNorm; // margin / (sigma ||w||) = 1
  const trueRadius = (wx - b) / wNorm; // distance to the decision boundary = sigma * PhiInv(pA)
  const pTrue = normalCdf(1, 0, 1);

  it('radius of a linear base is within Monte-Carlo error of sigma * PhiInv(pA), never above it', async () => {
    const n = 10_000;
    const x = image();
    const c = await certify(linearBase(w, b), x, { sigma, n0: 100, n, alpha: 0.001, batchSize: 2500, seed: 7 });
    x.dispose();
    expect(c.prediction).toBe(1);
    expect(c.counts.reduce((s, v) => s + v, 0)).toBe(n);
    expect(c.counts0.reduce((s, v) => s + v, 0)).toBe(100);
    const se = Math.sqrt((pTrue * (1 - pTrue)) / n);
    expect(Math.abs(c.nA / n - pTrue)).toBeLessThan(5 * se);
    expect(c.radius).toBeLessThanOrEqual(trueRadius);
    expect(c.radius).toBeGreaterThan(sigma * normalQuantile(pTrue - 7 * se, 0, 1));
    expect(c.radius).toBeCloseTo(sigma * normalQuantile(c.pA, 0, 1), 12);
  });

  it('overstates the true radius in at most about alpha of repeated runs', async () => {
    // 1-pixel threshold base with pA = 0.8; true radius sigma * PhiInv(0.8) = distance to the threshold.
    const s = 1;
    const thr = -normalQuantile(0.8, 0, 1);
    const x0 = pixel(0);
    const smooth = new Smooth(thresholdBase(thr), s, 2);
    const runs = 400;
    const alpha = 0.05;
    let over = 0;
    for (let seed = 1; seed <= runs; seed++) {
      const c = await smooth.certify(x0, { n0: 10, n: 100, alpha, batchSize: 100, seed });
      if (c.prediction === 1 ? c.radius > -thr : c.prediction !== ABSTAIN) over++;
    }
    x0.dispose();
    // Binomial(400, 0.05) exceeds 36 with probability < 1e-3; a point estimate of pA would overstate ~half the time.
    expect(over).toBeLessThanOrEqual(36);
  });

  it('a constant base certifies exactly the largest radius n and alpha allow', async () => {
    const constant: BaseClassifier = (z) => new Int32Array(z.shape[0]).fill(3);
    const x = image();
    const c = await certify(constant, x, { sigma, n0: 10, n: 1000, alpha: 0.001, batchSize: 300, seed: 1, numClasses: 10 });
    x.dispose();
    expect(c.prediction).toBe(3);
    expect(c.counts.length).toBe(10);
    expect(c.counts[3]).toBe(1000);
    expect(c.pA).toBeCloseTo(0.001 ** (1 / 1000), 12);
    expect(c.radius).toBeCloseTo(maxCertifiableRadius(sigma, 1000, 0.001), 12);
  });

  it('abstains when two classes tie', async () => {
    const x0 = pixel(0.5);
    for (const seed of [1, 2, 3]) {
      const c = await certify(thresholdBase(0.5), x0, { sigma: 0.25, n0: 100, n: 1000, alpha: 0.001, batchSize: 500, seed });
      expect(c.prediction).toBe(ABSTAIN);
      expect(c.radius).toBe(0);
      expect(c.pA).toBeLessThan(0.5);
    }
    x0.dispose();
  });
});

describe('PREDICT', () => {
  /** A base that ignores its input and returns a fixed list of labels (one batch of n). */
  const fixed = (labels: number[]): BaseClassifier => async () => Int32Array.from(labels);
  const rep = (counts: number[]) => counts.flatMap((k, c) => new Array<number>(k).fill(c));

  it('applies the two-sided binomial test to the top two counts', async () => {
    const x0 = pixel(0);
    const opts = { sigma: 1, n: 100, alpha: 0.05, batchSize: 100, seed: 1 };
    expect(await predict(fixed(rep([60, 40])), x0, opts)).toBe(ABSTAIN); // p = 0.0569
    expect(await predict(fixed(rep([61, 39])), x0, opts)).toBe(0); // p = 0.0352
    expect(await predict(fixed(rep([39, 61])), x0, opts)).toBe(1);
    // 50 vs 30 of 80 (p = 0.033) decides, although 50 of all 100 is no majority
    expect(await predict(fixed(rep([20, 30, 50])), x0, opts)).toBe(2);
    x0.dispose();
  });

  it('on a perfectly tied base it answers (necessarily wrongly) in at most about alpha of runs', async () => {
    // f = 1 iff delta > 0: both classes have probability exactly 1/2, so g(x) is undefined and any
    // answer other than ABSTAIN is an error that PREDICT's guarantee bounds by alpha.
    const x0 = pixel(0);
    const smooth = new Smooth(thresholdBase(0), 1, 2);
    const runs = 2000;
    let answered = 0;
    for (let seed = 1; seed <= runs; seed++) {
      if ((await smooth.predict(x0, { n: 100, alpha: 0.05, batchSize: 100, seed })) !== ABSTAIN) answered++;
    }
    x0.dispose();
    // Binomial(2000, 0.05) exceeds 130 with probability < 1e-3 (the exact test's size here is 0.035);
    // a one-sided test on the top class would answer in ~9% of runs, no test in all.
    expect(answered).toBeLessThanOrEqual(130);
  });

  it('returns the clear majority class', async () => {
    const x0 = pixel(0.9);
    expect(await predict(thresholdBase(0.5), x0, { sigma: 0.25, n: 200, alpha: 0.001, seed: 5 })).toBe(1);
    x0.dispose();
  });
});

describe('sampling', () => {
  /** 10 bins of the noisy pixel: count vectors of different noise draws practically never coincide. */
  const binned: BaseClassifier = (z) => tf.tidy(() => z.reshape([-1]).mul(5).add(5).clipByValue(0, 9.99).floor().cast('int32'));

  it('is batched with exact counts, reproducible under a seed and different without', async () => {
    const x0 = pixel(0);
    let calls = 0;
    const counting: BaseClassifier = (z) => {
      calls++;
      return binned(z);
    };
    const smooth = new Smooth(counting, 0.3, 10);
    const a = await smooth.sampleNoise(x0, 1001, 100, 42);
    expect(calls).toBe(11);
    expect(a.reduce((s, v) => s + v, 0)).toBe(1001);
    expect(Array.from(await smooth.sampleNoise(x0, 1001, 100, 42))).toEqual(Array.from(a));
    expect(Array.from(await smooth.sampleNoise(x0, 1001, 100, 43))).not.toEqual(Array.from(a));
    const u = await smooth.sampleNoise(x0, 1001, 100);
    const v = await smooth.sampleNoise(x0, 1001, 100);
    expect(Array.from(u)).not.toEqual(Array.from(v));
    const c1 = await smooth.certify(x0, { n0: 50, n: 500, alpha: 0.01, seed: 9 });
    const c2 = await smooth.certify(x0, { n0: 50, n: 500, alpha: 0.01, seed: 9 });
    expect(c2).toEqual(c1);
    x0.dispose();
  });

  it('rejects labels outside the classes', async () => {
    const x0 = pixel(0);
    await expect(certify(() => [0, 7], x0, { sigma: 1, n0: 2, n: 2, alpha: 0.1, batchSize: 2, numClasses: 5 })).rejects.toThrow(/label 7/);
    x0.dispose();
  });

  it('leaks no tensors', async () => {
    const x4 = tf.tensor4d([0.3, 0.6, 0.2, 0.8], [1, 2, 2, 1]);
    const x3 = tf.tensor3d([0.7], [1, 1, 1]);
    const before = tf.memory().numTensors;
    await certify(linearBase([1, 2, -1, 0.5], 0.5), x4, { sigma: 0.5, n0: 20, n: 300, alpha: 0.01, batchSize: 64, seed: 1 });
    await predict(thresholdBase(0.5), x3, { sigma: 0.5, n: 100, alpha: 0.01, batchSize: 30, seed: 1 });
    await expect(certify(() => [0, 7], x3, { sigma: 1, n0: 2, n: 2, alpha: 0.1, batchSize: 2, numClasses: 5 })).rejects.toThrow();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x4, x3]);
  });
});

describe('bases', () => {
  const diffusion = new GaussianDiffusion();

  it('sigmaToT and tToSigma round-trip', () => {
    for (let t = 1; t <= diffusion.T; t++) expect(sigmaToT(diffusion, tToSigma(diffusion, t))).toBe(t);
    for (const s of [0.12, 0.25, 0.5, 1.0]) {
      const t = sigmaToT(diffusion, s);
      const gap = Math.max(tToSigma(diffusion, t + 1) - tToSigma(diffusion, t), tToSigma(diffusion, t) - tToSigma(diffusion, t - 1));
      expect(Math.abs(tToSigma(diffusion, t) - s)).toBeLessThanOrEqual(gap / 2);
      expect(diffusion.sigmaAt(t)).toBeCloseTo(2 * s, 1); // model scale [-1, 1] doubles pixel sigma
    }
  });

  it('denoisedBase feeds the model sqrt(abar_t) (2 (x + delta) - 1), unclipped, and classifies the denoised x0', () => {
    const v = [-0.5, 0.2, 1.7, 0.9]; // a noisy image may leave [0, 1]
    const seen: { t: number[]; xt: number[] }[] = [];
    const zeroEps = (xt: Tensor4D, t: tf.Tensor1D) => {
      seen.push({ t: Array.from(t.dataSync()), xt: Array.from(xt.dataSync()) });
      return tf.zerosLike(xt);
    };
    let classified: number[] = [];
    const logits = (x: Tensor4D) => {
      classified = Array.from(x.dataSync());
      return tf.zeros([x.shape[0], 2]) as tf.Tensor2D;
    };
    const sigma = 0.5;
    const clip01 = v.map((a) => Math.min(1, Math.max(0, a)));
    for (const steps of [1, 4]) {
      seen.length = 0;
      const base = denoisedBase(diffusion, zeroEps, logits, { sigma, steps });
      expect(base.tStar).toBe(sigmaToT(diffusion, sigma));
      const xNoisy = tf.tensor4d(v, [1, 2, 2, 1]);
      const before = tf.memory().numTensors;
      (base(xNoisy) as tf.Tensor).dispose();
      expect(tf.memory().numTensors).toBe(before);
      xNoisy.dispose();
      const ts = steps === 1 ? [base.tStar] : diffusion.respace(base.tStar, steps);
      expect(seen.map((s) => s.t[0])).toEqual(ts);
      const scale = Math.sqrt(diffusion.abar[base.tStar]);
      seen[0].xt.forEach((a, i) => expect(a).toBeCloseTo(scale * (2 * v[i] - 1), 5));
      // with eps = 0 the denoised image is x + delta clipped to [0, 1] (DDIM keeps it there)
      classified.forEach((a, i) => expect(a).toBeCloseTo(clip01[i], 5));
    }
  });

  it('denoisedBase with the DDPM sampler walks the respaced steps and leaks nothing', () => {
    const ts: number[] = [];
    const eps = (xt: Tensor4D, t: tf.Tensor1D) => {
      ts.push(t.dataSync()[0]);
      return tf.zerosLike(xt);
    };
    const base = denoisedBase(diffusion, eps, (x) => x.reshape([x.shape[0], -1]) as tf.Tensor2D, { sigma: 0.25, steps: 3, sampler: 'ddpm', seed: 1 });
    const xNoisy = tf.tensor4d([0.2, 0.4, 0.6, 0.8], [2, 1, 2, 1]);
    const before = tf.memory().numTensors;
    const out = base(xNoisy) as tf.Tensor;
    expect(out.shape).toEqual([2, 2]);
    expect(Math.min(...out.dataSync())).toBeGreaterThanOrEqual(0);
    expect(Math.max(...out.dataSync())).toBeLessThanOrEqual(1);
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
    xNoisy.dispose();
    expect(ts).toEqual(diffusion.respace(base.tStar, 3));
  });

  it('denoisedBase passes at most `chunk` images through the network, with the same answers as one pass', () => {
    const sizes: number[] = [];
    const eps = (xt: Tensor4D, t: tf.Tensor1D) => {
      sizes.push(xt.shape[0]);
      return tf.tidy(() => xt.mul(0.3).add(t.reshape([-1, 1, 1, 1]).div(5000)) as Tensor4D);
    };
    const logits = (x: Tensor4D) => x.reshape([x.shape[0], -1]).slice([0, 0], [-1, 3]) as tf.Tensor2D;
    const xNoisy = tf.tidy(() => tf.randomNormal([23, 4, 4, 1], 0.5, 0.5, 'float32', 3) as Tensor4D);
    const whole = denoisedBase(diffusion, eps, logits, { sigma: 0.5, steps: 2, chunk: 1000 })(xNoisy) as tf.Tensor;
    expect(sizes).toEqual([23, 23]);
    sizes.length = 0;
    const before = tf.memory().numTensors;
    const parts = denoisedBase(diffusion, eps, logits, { sigma: 0.5, steps: 2, chunk: 10 })(xNoisy) as tf.Tensor;
    expect(tf.memory().numTensors).toBe(before + 1); // only the answer survives
    expect(sizes).toEqual([10, 10, 10, 10, 3, 3]);
    expect(parts.shape).toEqual([23, 3]);
    expect(Array.from(parts.dataSync())).toEqual(Array.from(whole.dataSync()));
    tf.dispose([xNoisy, whole, parts]);
    expect(() => denoisedBase(diffusion, eps, logits, { sigma: 0.5, chunk: 0 })).toThrow(/chunk must be a positive integer/);
  });

  it('noisyBase classifies x + delta itself', () => {
    const base = noisyBase((x) => x.reshape([x.shape[0], -1]) as tf.Tensor2D);
    const z = tf.tensor4d([0.1, 0.9], [2, 1, 1, 1]);
    const out = base(z) as tf.Tensor;
    expect(Array.from(out.dataSync())).toEqual(Array.from(z.dataSync()));
    tf.dispose([z, out]);
  });
});
