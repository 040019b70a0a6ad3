/**
 * What every attack shares: the threat model (an Lp ball around x intersected with [0,1]^d),
 * the losses an attacker maximises, the gradient oracle, and per-example bookkeeping of the
 * best adversarial found so far.
 *
 * Attacks assume the model treats examples independently (no batch statistics at inference),
 * so a batch is attacked as N independent problems and rows can leave the batch once fooled.
 */
import { tf, type Tensor, type Tensor1D, type Tensor2D, type Tensor4D } from '../src/backend/index.js';
import type { LogitsFn } from '../src/types.js';

export type Norm = 'Linf' | 'L2';
/** ce: cross-entropy; margin: max_{j!=y} z_j - z_y (CW); dlr: Croce & Hein's difference of logits ratio. */
export type LossName = 'ce' | 'margin' | 'dlr';
/** Integer class labels, one per image. */
export type Labels = Int32Array | readonly number[] | Tensor1D;

/** Per-example loss [N] (to maximise), its gradient w.r.t. x, and the logits seen while computing it. */
export interface LossGradResult {
  loss: Tensor1D;
  grad: Tensor4D;
  logits: Tensor2D;
}
export type LossGrad = (x: Tensor4D, y: Tensor1D, loss: LossName) => LossGradResult;

/** The thing under attack. For a randomized defence every `logits` call is one fresh draw. */
export interface AttackModel {
  logits: LogitsFn;
  lossGrad: LossGrad;
  randomized: boolean;
}
/** A plain differentiable logits function is a deterministic AttackModel. */
export type Target = LogitsFn | AttackModel;

export interface AttackResult {
  /** Adversarial images, same shape as x, inside the threat model; the caller disposes. */
  xAdv: Tensor4D;
  /** 1 where the model classified the clean image correctly (those rows were attacked). */
  cleanCorrect: Uint8Array;
  /** 1 where xAdv is misclassified; clean errors count as fooled with xAdv = x. */
  fooled: Uint8Array;
  /** Model calls (a gradient evaluation or a forward pass) spent on each example. */
  queries: Int32Array;
}

/** Slack of the norm-bound check: float32 rounding of x + delta (one ulp near 1 is 6e-8). */
export const BOUND_TOLERANCE = 1e-6;

export function asModel(target: Target): AttackModel {
  if (typeof target !== 'function') return target;
  return { logits: target, lossGrad: autodiffLossGrad(target), randomized: false };
}

export function toLabels(y: Labels, n: number): Int32Array {
  const out = y instanceof tf.Tensor ? Int32Array.from(y.dataSync()) : Int32Array.from(y);
  if (out.length !== n) throw new Error(`expected ${n} labels, got ${out.length}`);
  return out;
}

/** fn(z) as a constant for autodiff (stop-gradient), for masks derived from the logits. */
function detached(z: Tensor2D, fn: (z: Tensor2D) => Tensor2D): Tensor2D {
  const op = tf.customGrad((...args: unknown[]) => {
    const a = args[0] as Tensor2D;
    return { value: fn(a), gradFunc: () => tf.zerosLike(a) };
  });
  return op(z) as Tensor2D;
}

/** Per-example loss [N] from logits [N, C]; larger means closer to (or further into) misclassification. */
export function perExampleLoss(name: LossName, logits: Tensor2D, y: Tensor1D): Tensor1D {
  return tf.tidy(() => {
    const classes = logits.shape[1];
    const isY = tf.oneHot(y, classes).cast('bool');
    const zY = tf.sum(tf.where(isY, logits, tf.zerosLike(logits)), 1);
    const zOther = tf.max(tf.where(isY, tf.fill(logits.shape, -Infinity), logits), 1);
    if (name === 'ce') return tf.neg(tf.sum(tf.where(isY, tf.logSoftmax(logits), tf.zerosLike(logits)), 1)) as Tensor1D;
    if (name === 'margin') return tf.sub(zOther, zY) as Tensor1D;
    if (classes < 3) throw new Error('the DLR loss needs at least 3 classes');
    // DLR = -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3), pi the classes sorted by logit.
    const third = detached(logits, (z) => {
      const first = tf.oneHot(tf.argMax(z, 1), classes).cast('bool');
      const rest = tf.where(first, tf.fill(z.shape, -Infinity), z);
      const second = tf.oneHot(tf.argMax(rest, 1), classes).cast('bool');
      const rest2 = tf.where(second, tf.fill(z.shape, -Infinity), rest);
      return tf.oneHot(tf.argMax(rest2, 1), classes).cast('float32') as Tensor2D;
    });
    const z3 = tf.sum(tf.mul(logits, third), 1);
    const spread = tf.add(tf.sub(tf.max(logits, 1), z3), 1e-12);
    return tf.div(tf.sub(zOther, zY), spread) as Tensor1D;
  });
}

/**
 * Gradient oracle by tf autodiff of sum_i loss_i(f(x)) (examples independent, so row i is d loss_i / d x_i).
 * `maxBatch`: differentiate at most this many images at a time (the tape of a full gradient through a
 * purifier holds every reverse step's activations, and the wasm heap has 4 GB: batch 80 through
 * diffpure aborted the wasm module). Exact for deterministic f; a randomized f called with one seed
 * per call replays that seed for each chunk, which gives each image a valid draw all the same.
 */
export function autodiffLossGrad(f: LogitsFn, maxBatch = Infinity): LossGrad {
  const whole: LossGrad = (x, y, loss) => {
    let kept: Tensor2D | undefined;
    const { value, grad } = tf.valueAndGrad((xv: Tensor4D) => {
      const z = f(xv);
      kept = tf.keep(z);
      return tf.sum(perExampleLoss(loss, z, y));
    })(x);
    value.dispose();
    // tf.keep escapes every tidy scope; hand back an ordinary (scope-tracked) tensor instead.
    const logits = kept!.clone();
    kept!.dispose();
    return { loss: perExampleLoss(loss, logits, y), grad: grad as Tensor4D, logits };
  };
  return (x, y, loss) => {
    const n = x.shape[0];
    if (n <= maxBatch) return whole(x, y, loss);
    const parts: ReturnType<LossGrad>[] = [];
    for (let s = 0; s < n; s += maxBatch) {
      const k = Math.min(maxBatch, n - s);
      const xs = tf.slice(x, [s, 0, 0, 0], [k, -1, -1, -1]);
      const ys = tf.slice(y, [s], [k]);
      parts.push(whole(xs, ys, loss));
      tf.dispose([xs, ys]);
    }
    const out = {
      loss: tf.concat(parts.map((p) => p.loss)) as Tensor1D,
      grad: tf.concat(parts.map((p) => p.grad)) as Tensor4D,
      logits: tf.concat(parts.map((p) => p.logits)) as Tensor2D,
    };
    tf.dispose(parts.flatMap((p) => [p.loss, p.grad, p.logits]));
    return out;
  };
}

export function misclassified(logits: Tensor2D, y: ArrayLike<number>): Uint8Array {
  const pred = tf.tidy(() => tf.argMax(logits, 1).dataSync());
  return Uint8Array.from(pred, (p, i) => (p !== y[i] ? 1 : 0));
}

/** Per-example L2 norm as [N,1,1,1], for broadcasting against images. */
function l2(t: Tensor4D): Tensor4D {
  return tf.sqrt(tf.sum(tf.square(t), [1, 2, 3], true)) as Tensor4D;
}

/**
 * Euclidean projection onto {x' : ||x' - x0||_p <= eps} ∩ [0,1]^d. Exact for both norms: project onto
 * the ball, then clip; since x0 lies in [0,1]^d, clipping only moves coordinates towards x0.
 * Under L2 the radius aimed at is eps less a rounding-sized margin (1e-5 relative plus sqrt(d) half-ulps):
 * the float32 norm and the float32 sum x0 + delta can otherwise land ~1e-6 outside the ball as measured in
 * float64, which the bench rightly refuses as leaving the threat model.
 */
export function project(norm: Norm, x0: Tensor4D, x: Tensor4D, eps: number): Tensor4D {
  return tf.tidy(() => {
    if (norm === 'Linf') return tf.clipByValue(tf.minimum(tf.maximum(x, tf.sub(x0, eps)), tf.add(x0, eps)), 0, 1);
    const delta = tf.sub(x, x0);
    const d = x0.shape[1] * x0.shape[2] * x0.shape[3];
    const radius = Math.max(0, eps * (1 - 1e-5) - Math.sqrt(d) * 2 ** -24);
    const scale = tf.minimum(1, tf.div(radius, tf.maximum(l2(delta as Tensor4D), 1e-12)));
    return tf.clipByValue(tf.add(x0, tf.mul(delta, scale)), 0, 1);
  }) as Tensor4D;
}

/** A uniform random point of the ball around x0, clipped to [0,1]. */
export function randomStart(norm: Norm, x0: Tensor4D, eps: number, seed: number): Tensor4D {
  return tf.tidy(() => {
    if (norm === 'Linf') return project(norm, x0, tf.add(x0, tf.randomUniform(x0.shape, -eps, eps, 'float32', seed)), eps);
    const z = tf.randomNormal(x0.shape, 0, 1, 'float32', seed) as Tensor4D;
    const d = x0.shape[1] * x0.shape[2] * x0.shape[3];
    const radius = tf.mul(eps, tf.pow(tf.randomUniform([x0.shape[0], 1, 1, 1], 0, 1, 'float32', seed + 1), 1 / d));
    return project(norm, x0, tf.add(x0, tf.mul(tf.div(z, tf.maximum(l2(z), 1e-12)), radius)) as Tensor4D, eps);
  });
}

/** Steepest-ascent direction of unit norm: sign(g) under L-inf, g / ||g||_2 under L2. */
export function ascentDirection(norm: Norm, grad: Tensor4D): Tensor4D {
  return tf.tidy(() => (norm === 'Linf' ? tf.sign(grad) : tf.div(grad, tf.maximum(l2(grad), 1e-12)))) as Tensor4D;
}

/** Largest ||xAdv_i - x_i||_p per example, computed in float64 from the float32 values. */
export function perturbationNorms(norm: Norm, x: Float32Array | Tensor4D, xAdv: Float32Array | Tensor4D, n: number): Float64Array {
  const a = x instanceof Float32Array ? x : x.dataSync();
  const b = xAdv instanceof Float32Array ? xAdv : xAdv.dataSync();
  const d = a.length / n;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let j = i * d; j < (i + 1) * d; j++) {
      const diff = Math.abs(b[j] - a[j]);
      acc = norm === 'Linf' ? Math.max(acc, diff) : acc + diff * diff;
    }
    out[i] = norm === 'Linf' ? acc : Math.sqrt(acc);
  }
  return out;
}

/** Row gather of a tensor by (local) indices. */
export function rows<T extends Tensor>(t: T, idx: readonly number[]): T {
  return tf.tidy(() => tf.gather(t, tf.tensor1d(Int32Array.from(idx), 'int32'))) as T;
}

export function labelTensor(y: Int32Array, idx: readonly number[]): Tensor1D {
  return tf.tensor1d(Int32Array.from(idx, (i) => y[i]), 'int32');
}

/** Bool mask [n,1,1,1] for tf.where against images. */
export function rowMask(flags: ArrayLike<number | boolean>): Tensor4D {
  return tf.tensor4d(Uint8Array.from(flags as ArrayLike<number>, (v) => (v ? 1 : 0)), [flags.length, 1, 1, 1], 'bool');
}

/**
 * Per-example outcome of an attack: the clean pass, the first adversarial found for each example
 * (any misclassified point), and, for examples never fooled, the highest-loss point seen.
 */
export class Outcome {
  readonly n: number;
  readonly size: number;
  readonly xAdv: Float32Array;
  readonly cleanCorrect: Uint8Array;
  readonly fooled: Uint8Array;
  readonly queries: Int32Array;
  private readonly bestLoss: Float64Array;

  constructor(
    model: AttackModel,
    readonly x: Tensor4D,
    readonly y: Int32Array,
  ) {
    this.n = x.shape[0];
    this.size = x.size / this.n;
    this.xAdv = Float32Array.from(x.dataSync());
    const wrong = tf.tidy(() => misclassified(model.logits(x), y));
    this.cleanCorrect = wrong.map((w) => 1 - w);
    this.fooled = wrong.slice();
    this.queries = new Int32Array(this.n);
    this.bestLoss = new Float64Array(this.n).fill(-Infinity);
  }

  /** Indices not fooled yet (the clean-correct ones the attack has not broken). */
  remaining(): number[] {
    const out: number[] = [];
    this.fooled.forEach((f, i) => f || out.push(i));
    return out;
  }

  count(idx: readonly number[], calls = 1): void {
    for (const i of idx) this.queries[i] += calls;
  }

  private write(i: number, data: ArrayLike<number>, row: number): void {
    this.xAdv.set((data as Float32Array).subarray(row * this.size, (row + 1) * this.size), i * this.size);
  }

  /** Record rows of xSub (rows idx of the batch) that are misclassified; returns whether any were. */
  recordFooled(idx: readonly number[], xSub: Tensor4D, wrong: Uint8Array): boolean {
    if (!wrong.some((w) => w)) return false;
    const data = xSub.dataSync();
    idx.forEach((i, r) => {
      if (wrong[r] && !this.fooled[i]) {
        this.fooled[i] = 1;
        this.write(i, data, r);
      }
    });
    return true;
  }

  /** Offer candidates for examples not fooled: kept where their loss beats the best so far. */
  offerBest(idx: readonly number[], xSub: Tensor4D | Float32Array, loss: ArrayLike<number>): void {
    const data = xSub instanceof Float32Array ? xSub : xSub.dataSync();
    idx.forEach((i, r) => {
      if (!this.fooled[i] && loss[r] > this.bestLoss[i]) {
        this.bestLoss[i] = loss[r];
        this.write(i, data, r);
      }
    });
  }

  result(): AttackResult {
    return {
      xAdv: tf.tensor4d(this.xAdv, this.x.shape),
      cleanCorrect: this.cleanCorrect,
      fooled: this.fooled,
      queries: this.queries,
    };
  }
}

/** Seeds for tf random ops, drawn from a mulberry32 stream. */
export function nextSeed(rng: () => number): number {
  return Math.floor(rng() * 2 ** 31);
}
