/**
 * What a robustness run attacks with: the presets (attack budgets) and the attack list they expand to.
 * The same attacks, in the same order, run against every defence. The losses differ on purpose: PGD
 * climbs the CW margin (no softmax saturation on confident images), APGD the cross-entropy, Square the
 * margin without gradients (it catches gradient masking).
 */
import type { Tensor4D } from '../../src/backend/index.js';
import type { AttackModel, Norm } from '../common.js';
import type { NamedAttack } from '../ensemble.js';
import { apgd } from '../apgd.js';
import { pgd } from '../pgd.js';
import { square } from '../square.js';

export const ATTACK_NAMES = ['pgd', 'apgd', 'square'] as const;
export type AttackName = (typeof ATTACK_NAMES)[number];

export const PRESET_NAMES = ['quick', 'standard', 'strong'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

/** Attack budgets. eot applies to randomized defences only (deterministic ones need 1 draw per gradient). */
export interface AttackSettings {
  pgdSteps: number; // PGD (Madry et al.) on the CW margin loss, step 2.5 eps / steps, random start
  apgdSteps: number; // APGD-CE (Croce & Hein 2020)
  squareQueries: number; // Square Attack, L-inf only
  eot: number; // gradient averaged over this many defence draws
  draws: number; // k: each adversarial image is resubmitted k times (worst-of-k); 1 for deterministic defences
}

export const PRESETS: Record<PresetName, AttackSettings> = {
  /** a pipeline check, not an evaluation */
  quick: { pgdSteps: 10, apgdSteps: 10, squareQueries: 100, eot: 2, draws: 2 },
  /** the reported evaluation */
  standard: { pgdSteps: 50, apgdSteps: 50, squareQueries: 1000, eot: 8, draws: 5 },
  /** a check that the standard numbers have converged */
  strong: { pgdSteps: 200, apgdSteps: 200, squareQueries: 5000, eot: 20, draws: 10 },
};

/** Default attack list for a norm (Square is implemented for L-inf only). */
export function defaultAttacks(norm: Norm): AttackName[] {
  return norm === 'Linf' ? ['pgd', 'apgd', 'square'] : ['pgd', 'apgd'];
}

export function checkAttacks(names: readonly string[], norm: Norm): AttackName[] {
  for (const a of names) {
    if (!(ATTACK_NAMES as readonly string[]).includes(a)) throw new RangeError(`unknown attack "${a}" (expected ${ATTACK_NAMES.join(', ')})`);
    if (a === 'square' && norm !== 'Linf') throw new RangeError('square is implemented for --norm linf only; drop it from --attacks');
  }
  if (new Set(names).size !== names.length || names.length === 0) throw new RangeError(`attacks must be a non-empty list without repeats, got ${names.join(',')}`);
  return names as AttackName[];
}

/** The attacks as NamedAttacks for one (norm, eps); `seed` makes their random starts reproducible. */
export function buildAttacks(names: readonly AttackName[], s: AttackSettings, norm: Norm, eps: number, seed: number): NamedAttack[] {
  const make = (name: AttackName): NamedAttack['run'] => {
    if (name === 'pgd') return (m: AttackModel, x: Tensor4D, y: Int32Array) => pgd(m, x, y, { norm, eps, steps: s.pgdSteps, loss: 'margin', seed });
    if (name === 'apgd') return (m: AttackModel, x: Tensor4D, y: Int32Array) => apgd(m, x, y, { norm, eps, steps: s.apgdSteps, loss: 'ce', seed: seed + 1 });
    return (m: AttackModel, x: Tensor4D, y: Int32Array) => square(m, x, y, { eps, queries: s.squareQueries, seed: seed + 2 });
  };
  return names.map((name) => ({ name, run: make(name) }));
}

/** 32-bit FNV-1a of the parts: a seed that depends only on what it names (not on order or workers). */
export function hashSeed(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join('|')) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h & 0x7fffffff;
}
