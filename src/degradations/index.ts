/**
 * Image degradations for robustness evaluation and training: composable, seedable, severity 1..5.
 *
 *   const { y, params } = DEGRADATIONS['gaussian-blur'].apply(x, 3, seed);   // sync: tf ops
 *   const { y, params } = await DEGRADATIONS.jpeg.apply(x, 3, seed);          // async: sharp codec
 *   const seq = randomSequence({ length: 3, seed, channels: 1 });
 *   const { y, params } = seq.applySync(x);  // params.steps: [{ name, severity, seed, params }, ...]
 *
 * Contract of every degradation: x is [N,H,W,C] in [0,1] and is not disposed; y has x's shape,
 * values in [0,1], and belongs to the caller; the same (x, severity, seed) gives the same y;
 * `params` records what was used (severity, seed and the drawn parameters). Severity tables: README.md.
 */
export * from './common.js';
export { DEGRADATIONS, DEGRADATION_NAMES, type DegradationName, degradationsFor, getDegradation } from './registry.js';
export { randomSequence, sequence, type DegradationSequence, type RandomSequenceOptions, type SequenceStep } from './sequence.js';
export { scaledTable, roundApprox } from './jpeg.js';
