/**
 * Degradation sequences: several degradations applied one after another, each with its own
 * severity and seed. `randomSequence` draws one reproducibly from a seed, with a different
 * degradation at each step: no degradation repeats until every one in the pool has been used, and
 * never twice in a row.
 */
import type { Tensor4D } from '../backend/index.js';
import { mulberry32, permutation } from '../util/rng.js';
import { type Degraded, type Params, type Severity, SEVERITIES, nextSeed } from './common.js';
import { DEGRADATIONS, DEGRADATION_NAMES, type DegradationName, getDegradation } from './registry.js';

export interface SequenceStep {
  name: DegradationName;
  severity: Severity;
  seed: number;
}

export interface DegradationSequence {
  readonly steps: readonly SequenceStep[];
  /** true when every step is synchronous, so `applySync` may be used (e.g. inside tf.grad). */
  readonly sync: boolean;
  /** Apply the steps in order; params = { steps: [{ name, severity, seed, params }] }. */
  apply(x: Tensor4D): Promise<Degraded>;
  applySync(x: Tensor4D): Degraded;
}

/** Result of one step, and the input for the next; intermediates are disposed, the caller's x is not. */
function advance(x: Tensor4D, current: Tensor4D, step: SequenceStep, result: Degraded, log: Params[]): Tensor4D {
  if (current !== x) current.dispose();
  log.push({ name: step.name, severity: step.severity, seed: step.seed, params: result.params });
  return result.y;
}

/** A fixed sequence of steps. */
export function sequence(steps: readonly SequenceStep[]): DegradationSequence {
  const frozen = steps.map((s) => ({ ...s }));
  frozen.forEach((s) => getDegradation(s.name)); // fail early on unknown names
  const finish = (x: Tensor4D, current: Tensor4D, log: Params[]): Degraded => ({
    y: current === x ? x.clone() : current,
    params: { steps: log },
  });
  return {
    steps: frozen,
    sync: frozen.every((s) => DEGRADATIONS[s.name].sync),
    async apply(x) {
      const log: Params[] = [];
      let current = x;
      for (const step of frozen) {
        current = advance(x, current, step, await DEGRADATIONS[step.name].apply(current, step.severity, step.seed), log);
      }
      return finish(x, current, log);
    },
    applySync(x) {
      const syncSteps = frozen.map((step) => {
        const d = DEGRADATIONS[step.name];
        if (!d.sync) throw new TypeError(`sequence step "${step.name}" is asynchronous: use apply()`);
        return d;
      });
      const log: Params[] = [];
      let current = x;
      frozen.forEach((step, i) => {
        current = advance(x, current, step, syncSteps[i].apply(current, step.severity, step.seed), log);
      });
      return finish(x, current, log);
    },
  };
}

export interface RandomSequenceOptions {
  /** Number of steps (0 gives the identity). */
  length: number;
  seed: number;
  /** Severities drawn uniformly for each step; default 1..5. */
  severities?: readonly Severity[];
  /** Degradations to draw from; default every synchronous one (all but the sharp `jpeg`). */
  names?: readonly DegradationName[];
  /** Channel count of the images: when not 3, RGB-only degradations leave the default pool. */
  channels?: number;
}

function defaultPool(channels: number | undefined): DegradationName[] {
  return DEGRADATION_NAMES.filter((n) => DEGRADATIONS[n].sync && (channels === undefined || channels === 3 || DEGRADATIONS[n].channels === 'any'));
}

/** A random sequence, reproducible from `seed`. */
export function randomSequence(options: RandomSequenceOptions): DegradationSequence {
  const { length, seed } = options;
  const severities = options.severities ?? SEVERITIES;
  const pool = options.names ?? defaultPool(options.channels);
  if (!Number.isInteger(length) || length < 0) throw new RangeError(`randomSequence: length must be a non-negative integer, got ${length}`);
  if (pool.length === 0 || severities.length === 0) throw new RangeError('randomSequence: empty names or severities');
  if (pool.length === 1 && length > 1) throw new RangeError('randomSequence: a different degradation at each step needs at least 2 names');
  const rng = mulberry32(seed);
  const names: DegradationName[] = [];
  while (names.length < length) {
    const round = Array.from(permutation(pool.length, nextSeed(rng)), (i) => pool[i]);
    // a new round must not start with the previous step's degradation
    if (round[0] === names[names.length - 1]) [round[0], round[1]] = [round[1], round[0]];
    names.push(...round);
  }
  const steps = names.slice(0, length).map((name) => ({
    name,
    severity: severities[Math.floor(rng() * severities.length)],
    seed: nextSeed(rng),
  }));
  return sequence(steps);
}
