/**
 * What every degradation is: a pure function of (images [N,H,W,C] in [0,1], severity 1..5, seed)
 * returning images of the same shape in [0,1] together with the parameters it drew.
 *
 * Most degradations are tf ops and synchronous (`sync: true`), so they can run inside `tf.grad`.
 * The real JPEG codec goes through sharp and is asynchronous (`sync: false`). `await d.apply(...)`
 * works for both; code that must stay synchronous (a training step, an attack's gradient) narrows on
 * `d.sync` first.
 */
import { tf, type Tensor, type Tensor4D } from '../backend/index.js';
import type { Rng } from '../util/rng.js';

/** Corruption strength, as in ImageNet-C: 1 (mild) .. 5 (severe). */
export type Severity = 1 | 2 | 3 | 4 | 5;
export const SEVERITIES: readonly Severity[] = [1, 2, 3, 4, 5];

/** Parameters a degradation used: JSON-serialisable numbers, strings and arrays of them. */
export type Params = Record<string, unknown>;

export interface Degraded {
  /** Degraded images, same shape as the input, values in [0, 1]. The caller disposes it. */
  y: Tensor4D;
  params: Params;
}

/** Parameter values at severities 1..5 (index 0 is severity 1). */
export type SeverityTable = Record<string, readonly (number | string)[]>;

interface DegradationInfo {
  readonly name: string;
  readonly description: string;
  /** The documented severity table: what `severity` selects. */
  readonly table: SeverityTable;
  /** true when the output depends on the seed (false: the seed is ignored). */
  readonly random: boolean;
  /** true when the gradient w.r.t. x is informative (tf ops, not zero almost everywhere). */
  readonly differentiable: boolean;
  /** 'rgb': acts only when C = 3 and returns the input unchanged otherwise. */
  readonly channels: 'any' | 'rgb';
}

export interface SyncDegradation extends DegradationInfo {
  readonly sync: true;
  apply(x: Tensor4D, severity: Severity, seed: number): Degraded;
}

export interface AsyncDegradation extends DegradationInfo {
  readonly sync: false;
  apply(x: Tensor4D, severity: Severity, seed: number): Promise<Degraded>;
}

export type Degradation = SyncDegradation | AsyncDegradation;

export function checkArgs(name: string, x: Tensor4D, severity: number): void {
  if (x.rank !== 4) throw new TypeError(`${name}: expected images [N,H,W,C], got shape [${x.shape.join(',')}]`);
  if (!Number.isInteger(severity) || severity < 1 || severity > 5) {
    throw new RangeError(`${name}: severity must be an integer 1..5, got ${severity}`);
  }
}

/** Table row for a severity. */
export function at<T>(row: readonly T[], severity: Severity): T {
  return row[severity - 1];
}

/** A 32-bit seed drawn from `rng`, for tf.random* ops and sub-steps. */
export function nextSeed(rng: Rng): number {
  return Math.floor(rng() * 4294967296) >>> 0;
}

/**
 * A synchronous degradation from its body. The wrapper checks the arguments, runs the body in
 * `tf.tidy` (no intermediate survives) and clips the result to [0, 1] (gradient passes inside).
 */
export function defineSync(
  info: Omit<DegradationInfo, 'channels'> & { channels?: 'any' | 'rgb' },
  body: (x: Tensor4D, severity: Severity, seed: number) => { y: Tensor; params: Params },
): SyncDegradation {
  const d: SyncDegradation = {
    channels: 'any',
    ...info,
    sync: true,
    apply(x, severity, seed) {
      checkArgs(info.name, x, severity);
      let params: Params = {};
      const y = tf.tidy(() => {
        const r = body(x, severity, seed >>> 0);
        if (r.y.shape.join() !== x.shape.join()) throw new Error(`${info.name}: output shape [${r.y.shape}] != input [${x.shape}]`);
        params = r.params;
        return tf.clipByValue(r.y, 0, 1) as Tensor4D;
      });
      return { y, params: { severity, seed: seed >>> 0, ...params } };
    },
  };
  return d;
}
