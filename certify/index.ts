/** Randomized-smoothing certification: CERTIFY/PREDICT (Cohen et al. 2019), base classifiers, the harness. */
export * from './core.js';
export * from './bases.js';
export * from './run.js';
export * from './load.js';
