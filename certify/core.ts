/**
 * Randomized smoothing (Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized
 * Smoothing", ICML 2019), read after locuslab/smoothing `code/core.py`.
 *
 * The smoothed classifier is g(x) = argmax_c P(f(x + delta) = c), delta ~ N(0, sigma^2 I), for a base
 * classifier f. CERTIFY and PREDICT estimate g by Monte Carlo with exact integer counts; their guarantees
 * hold over the randomness of the noise samples, for any base classifier f (deterministic or randomized).
 * Images are [N, H, W, C] float32; sigma is in the same units as the pixels ([0, 1] images).
 */
import betaQuantile from '@stdlib/stats-base-dists-beta-quantile';
import normalQuantile from '@stdlib/stats-base-dists-normal-quantile';
import binomialTest from '@stdlib/stats-binomial-test';
import { tf, type Tensor, type Tensor4D } from '../src/backend/index.js';
import { cryptoSeed, mulberry32 } from '../src/util/rng.js';

/** The label CERTIFY and PREDICT return when they decline to answer. */
export const ABSTAIN = -1;

/** What a base classifier may return for a batch of B noisy images: logits [B, classes], labels [B] (tensor or array). */
export type BaseOutput = Tensor | ArrayLike<number>;
/**
 * A base classifier f: noisy images [B, H, W, C] -> logits [B, classes] (counted by argmax) or labels [B],
 * synchronously or as a promise. It must not dispose its input; a returned tensor is disposed by the caller.
 * Noisy inputs are x + delta, not clipped to [0, 1] (clipping would change the noise model of the certificate).
 */
export type BaseClassifier = (xNoisy: Tensor4D) => BaseOutput | Promise<BaseOutput>;

export interface SampleOptions {
  /** noisy images per call of the base classifier (default 1000) */
  batchSize?: number;
  /** seed for the noise; default from the OS CSPRNG. Same seed, same base -> identical counts. */
  seed?: number;
}
export interface CertifyOptions extends SampleOptions {
  /** samples used to select the top class */
  n0: number;
  /** fresh samples used to bound its probability */
  n: number;
  /** failure probability of the certificate, e.g. 0.001 */
  alpha: number;
}
export interface PredictOptions extends SampleOptions {
  n: number;
  alpha: number;
}

export interface Certificate {
  /** the certified class cA, or ABSTAIN */
  prediction: number;
  /** certified L2 radius sigma * PhiInv(pA) in pixel units; 0 when abstaining */
  radius: number;
  /** one-sided (1 - alpha) Clopper-Pearson lower bound on P(f(x + delta) = cA) */
  pA: number;
  /** the class selected from the n0 selection samples (reported even when abstaining) */
  cA: number;
  /** counts of the n estimation samples that fell on cA */
  nA: number;
  /** per-class counts of the n0 selection samples and of the n estimation samples */
  counts0: Int32Array;
  counts: Int32Array;
}

/**
 * One-sided (1 - alpha) lower confidence bound on a binomial proportion from k successes in n trials
 * (Clopper-Pearson): P(p >= bound) >= 1 - alpha. Equals statsmodels'
 * `proportion_confint(k, n, alpha=2*alpha, method="beta")[0]`; k = n gives alpha^(1/n); k = 0 gives 0.
 */
export function lowerConfidenceBound(k: number, n: number, alpha: number): number {
  if (!Number.isInteger(k) || !Number.isInteger(n) || k < 0 || k > n || n < 1) throw new RangeError(`need integers 0 <= k <= n, n >= 1 (k=${k}, n=${n})`);
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`alpha must be in (0, 1), got ${alpha}`);
  return k === 0 ? 0 : betaQuantile(alpha, k, n - k + 1);
}

/** Cohen et al.'s certified L2 radius for a lower bound pA on the top class's probability: sigma * PhiInv(pA). */
export function certifiedRadius(sigma: number, pA: number): number {
  return sigma * normalQuantile(pA, 0, 1);
}

/** Largest radius CERTIFY can ever return with n samples at level alpha: sigma * PhiInv(alpha^(1/n)). */
export function maxCertifiableRadius(sigma: number, n: number, alpha: number): number {
  return certifiedRadius(sigma, alpha ** (1 / n));
}

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/** Labels [B] from a base classifier's output; disposes a returned tensor. */
async function toLabels(out: BaseOutput, b: number): Promise<ArrayLike<number>> {
  let labels: ArrayLike<number>;
  if (out instanceof tf.Tensor) {
    try {
      if (out.rank === 2) {
        const am = tf.argMax(out, 1);
        try {
          labels = await am.data();
        } finally {
          am.dispose();
        }
      } else if (out.rank === 1) labels = await out.data();
      else throw new Error(`base classifier returned a rank-${out.rank} tensor; expected logits [B, classes] or labels [B]`);
    } finally {
      out.dispose();
    }
  } else labels = out;
  if (labels.length !== b) throw new Error(`base classifier returned ${labels.length} labels for a batch of ${b}`);
  return labels;
}

/** The smoothed classifier g around a base classifier f with noise level sigma. */
export class Smooth {
  /**
   * @param base the base classifier f
   * @param sigma noise standard deviation, pixel units
   * @param numClasses number of classes; inferred from the logits' width (or the largest label) when omitted
   */
  constructor(
    readonly base: BaseClassifier,
    readonly sigma: number,
    readonly numClasses?: number,
  ) {
    if (!(sigma > 0)) throw new RangeError(`sigma must be > 0, got ${sigma}`);
  }

  /**
   * CERTIFY. With probability at least 1 - alpha over the noise, if the answer is a class cA (not ABSTAIN)
   * then g(x + e) = cA for every perturbation with ||e||_2 < radius. Abstains when pA < 1/2.
   * x: one image, [1, H, W, C] or [H, W, C]; not disposed.
   */
  async certify(x: Tensor, { n0, n, alpha, batchSize, seed }: CertifyOptions): Promise<Certificate> {
    const rng = mulberry32(seed ?? cryptoSeed());
    const seedSelect = Math.floor(rng() * 2 ** 31);
    const seedEstimate = Math.floor(rng() * 2 ** 31);
    const counts0 = await this.sampleNoise(x, n0, batchSize, seedSelect);
    const cA = argmax(counts0);
    const counts = await this.sampleNoise(x, n, batchSize, seedEstimate, counts0.length);
    const nA = counts[cA] ?? 0;
    const pA = lowerConfidenceBound(nA, n, alpha);
    if (pA < 0.5) return { prediction: ABSTAIN, radius: 0, pA, cA, nA, counts0, counts };
    return { prediction: cA, radius: certifiedRadius(this.sigma, pA), pA, cA, nA, counts0, counts };
  }

  /**
   * PREDICT. With probability at least 1 - alpha over the noise, the answer is either g(x) or ABSTAIN:
   * it abstains unless a two-sided binomial test rejects "the top two classes are equally likely" at level alpha.
   */
  async predict(x: Tensor, { n, alpha, batchSize, seed }: PredictOptions): Promise<number> {
    const counts = await this.sampleNoise(x, n, batchSize, seed ?? cryptoSeed());
    const cA = argmax(counts);
    let cB = cA === 0 ? 1 : 0;
    for (let c = 0; c < counts.length; c++) if (c !== cA && counts[c] > (counts[cB] ?? 0)) cB = c;
    const nA = counts[cA];
    const nB = counts[cB] ?? 0;
    return binomialTest(nA, nA + nB, { p: 0.5 }).pValue > alpha ? ABSTAIN : cA;
  }

  /**
   * Class counts of f(x + delta) over `num` draws delta ~ N(0, sigma^2 I), in batches of `batchSize`.
   * The noise of each batch comes from tf.randomNormal under a seed drawn from mulberry32(seed), so the
   * counts are a deterministic function of (x, num, batchSize, seed) for a deterministic f.
   */
  async sampleNoise(x: Tensor, num: number, batchSize = 1000, seed = cryptoSeed(), minClasses = 0): Promise<Int32Array> {
    if (!Number.isInteger(num) || num < 1) throw new RangeError(`number of samples must be a positive integer, got ${num}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    const shape = x.rank === 4 ? x.shape.slice(1) : x.shape;
    if (shape.length !== 3 || (x.rank === 4 && x.shape[0] !== 1)) throw new Error(`x must be one image [1, H, W, C] or [H, W, C], got [${x.shape.join(', ')}]`);
    const [h, w, c] = shape;
    const rng = mulberry32(seed);
    const counts: number[] = new Array(Math.max(this.numClasses ?? 0, minClasses)).fill(0);
    for (let remaining = num; remaining > 0; ) {
      const b = Math.min(batchSize, remaining);
      remaining -= b;
      const batchSeed = Math.floor(rng() * 2 ** 31);
      const noisy = tf.tidy(() => tf.randomNormal([b, h, w, c], 0, this.sigma, 'float32', batchSeed).add(x.reshape([1, h, w, c])) as Tensor4D);
      let out: BaseOutput;
      try {
        out = await this.base(noisy);
      } finally {
        noisy.dispose();
      }
      if (out instanceof tf.Tensor && out.rank === 2) {
        const width = out.shape[1] as number;
        while (counts.length < width) counts.push(0);
      }
      const labels = await toLabels(out, b);
      for (let i = 0; i < b; i++) {
        const y = labels[i];
        if (!Number.isInteger(y) || y < 0 || (this.numClasses !== undefined && y >= this.numClasses)) {
          throw new Error(`base classifier returned label ${y}; expected an integer in [0, ${this.numClasses ?? 'classes'})`);
        }
        while (counts.length <= y) counts.push(0);
        counts[y]++;
      }
    }
    return Int32Array.from(counts);
  }
}

/** CERTIFY (see Smooth.certify) for a base classifier at noise level sigma. */
export function certify(base: BaseClassifier, x: Tensor, opts: CertifyOptions & { sigma: number; numClasses?: number }): Promise<Certificate> {
  return new Smooth(base, opts.sigma, opts.numClasses).certify(x, opts);
}

/** PREDICT (see Smooth.predict) for a base classifier at noise level sigma. */
export function predict(base: BaseClassifier, x: Tensor, opts: PredictOptions & { sigma: number; numClasses?: number }): Promise<number> {
  return new Smooth(base, opts.sigma, opts.numClasses).predict(x, opts);
}
