/** Adversarial attacks: model-agnostic (any differentiable images -> logits), batched, seedable. */
export * from './common.js';
export { fgsm, type FgsmOptions } from './fgsm.js';
export { pgd, stepMultiplier, type PgdOptions, type StepSchedule } from './pgd.js';
export { apgd, apgdCheckpoints, type ApgdOptions } from './apgd.js';
export { square, squareFraction, type SquareOptions } from './square.js';
export { adaptive, bpda, defended, logMeanSoftmax, voteScores, type AdaptiveOptions, type Defense, type DefenseGradient } from './eot.js';
export { runEnsemble, type EnsembleOptions, type EnsembleReport, type NamedAttack } from './ensemble.js';
