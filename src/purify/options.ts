/** Purifier options, their defaults and bounds. One validator serves the API, the CLI and the middleware. */
import { PurifyError } from './errors.js';

/**
 * patch: localise a patch and inpaint it (src/purify/patch/); auto: patch, then diffpure;
 * restore: blind restoration of any corruption with the restoration model (src/purify/restore.ts).
 */
export const MODES = ['diffpure', 'oneshot', 'none', 'patch', 'auto', 'restore'] as const;
export type Mode = (typeof MODES)[number];
export type Sampler = 'ddpm' | 'ddim';
/** restore: 'x0' = one-shot x0 prediction at the predicted level, then diffpure; 'cold' = cold-diffusion steps from the predicted level to 0. */
export const RESTORERS = ['x0', 'cold'] as const;
export type Restorer = (typeof RESTORERS)[number];

export interface PurifyOptions {
  model?: string; // shipped model name ('fashion-mnist', 'mnist') or a directory holding diffusion.{json,bin}
  mode?: Mode;
  /** diffpure: diffusion step to noise to (1..T; default 450); oneshot: used when `sigma` is not given; restore: its diffpure pass (default 100). */
  tStar?: number;
  /** oneshot: pixel-scale noise level in (0, 2]; mapped to t by sqrt((1-abar_t)/abar_t) = 2 sigma.
   *  restore: the degradation's level (RMS pixel error) instead of the level net's estimate. */
  sigma?: number;
  /** diffpure: number of reverse steps from tStar to 0 (1..tStar); restore 'cold': restoration steps. */
  steps?: number;
  /** restore: which design (default 'cold', `steps` steps; 'x0': its diffpure pass uses tStar and steps). */
  restorer?: Restorer;
  sampler?: Sampler;
  /** Reproducible randomness; default: a fresh seed from the OS CSPRNG on every call. */
  seed?: number;
  /** Purify k times (classification helpers majority-vote). */
  draws?: number;
  /** diffpure with the DDPM sampler: guidance of every reverse step towards the input (GDMP, Wang et al. 2022):
   *  the weight in [0, 1] of the input, diffused to the step's level, in the x_t each step starts from.
   *  0 (default) = none; larger keeps more of the input (clean accuracy up, and so what an attacker's
   *  perturbation keeps too). */
  guidance?: number;
  /** Check inputs for rank/shape/NaN/range (default true). */
  validate?: boolean;
}

/**
 * Defaults chosen on validation images (README, "Choosing the defaults"): tStar 450 had the highest
 * robust accuracy under the standard adaptive suite (20 images at L-inf 0.1; t* 100 / 300 / 450 / 600)
 * among the t* whose clean validation accuracy stays >= 80% (500 images).
 * oneshot uses the same tStar unless `sigma` is given. restore's diffpure pass after its x0 prediction
 * is meant to be short: `restoreTStar` unless tStar is given. restore's design: 'cold' (5 steps), chosen on
 * validation images over 'x0' (README, "Restoration": higher accuracy on corrupted images at every
 * severity, 47 dB vs 27 dB on clean ones, faster).
 */
export const DEFAULTS = { mode: 'diffpure' as Mode, tStar: 450, restoreTStar: 100, steps: 5, sampler: 'ddpm' as Sampler, draws: 1, guidance: 0, restorer: 'cold' as Restorer };

export const LIMITS = { T: 1000, maxDraws: 64, maxSigma: 2, maxSeed: 2 ** 31 - 1, maxGuidance: 1 };

function int(v: unknown, name: string, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw new PurifyError('BAD_OPTION', `${name} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`, name);
  }
  return v;
}

export interface ResolvedOptions {
  mode: Mode;
  tStar: number;
  steps: number;
  sampler: Sampler;
  sigma?: number;
  seed?: number;
  draws: number;
  guidance: number;
  validate: boolean;
  restorer: Restorer;
}

export function resolveOptions(o: PurifyOptions, T = LIMITS.T): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new PurifyError('BAD_OPTION', 'options must be an object');
  const mode = o.mode ?? DEFAULTS.mode;
  if (!MODES.includes(mode)) throw new PurifyError('UNKNOWN_MODE', `mode must be one of ${MODES.join(', ')}, got ${JSON.stringify(mode)}`, 'mode');
  const tStar = o.tStar === undefined ? (mode === 'restore' ? DEFAULTS.restoreTStar : DEFAULTS.tStar) : int(o.tStar, 'tStar', 1, T);
  const steps = o.steps === undefined ? Math.min(DEFAULTS.steps, tStar) : int(o.steps, 'steps', 1, tStar);
  const sampler = o.sampler ?? DEFAULTS.sampler;
  if (sampler !== 'ddpm' && sampler !== 'ddim') throw new PurifyError('BAD_OPTION', `sampler must be ddpm or ddim, got ${JSON.stringify(sampler)}`, 'sampler');
  let sigma: number | undefined;
  if (o.sigma !== undefined) {
    if (typeof o.sigma !== 'number' || !(o.sigma > 0 && o.sigma <= LIMITS.maxSigma)) {
      throw new PurifyError('BAD_OPTION', `sigma must be a number in (0, ${LIMITS.maxSigma}], got ${JSON.stringify(o.sigma)}`, 'sigma');
    }
    sigma = o.sigma;
  }
  const seed = o.seed === undefined ? undefined : int(o.seed, 'seed', 0, LIMITS.maxSeed);
  const draws = o.draws === undefined ? DEFAULTS.draws : int(o.draws, 'draws', 1, LIMITS.maxDraws);
  let guidance = DEFAULTS.guidance;
  if (o.guidance !== undefined) {
    if (typeof o.guidance !== 'number' || !(o.guidance >= 0 && o.guidance <= LIMITS.maxGuidance)) {
      throw new PurifyError('BAD_OPTION', `guidance must be a number in [0, ${LIMITS.maxGuidance}], got ${JSON.stringify(o.guidance)}`, 'guidance');
    }
    if (o.guidance > 0 && sampler !== 'ddpm') throw new PurifyError('BAD_OPTION', 'guidance needs the ddpm sampler (DDIM steps have no variance to guide with)', 'guidance');
    guidance = o.guidance;
  }
  const validate = o.validate ?? true;
  const restorer = o.restorer ?? DEFAULTS.restorer;
  if (!RESTORERS.includes(restorer)) throw new PurifyError('BAD_OPTION', `restorer must be one of ${RESTORERS.join(', ')}, got ${JSON.stringify(restorer)}`, 'restorer');
  return { mode, tStar, steps, sampler, sigma, seed, draws, guidance, validate, restorer };
}
