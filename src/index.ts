/** advpurify: diffusion purification, adaptive attacks and randomized-smoothing certification for Node.js. */
export { tf, initBackend } from './backend/index.js';
export type { BackendInfo, BackendName } from './backend/index.js';
export * from './purify/index.js';
export type { Classifier, LogitsFn } from './types.js';
export { loadDataset, loadFixture, FASHION_CLASSES, DIGIT_CLASSES } from './data/index.js';
export type { Dataset, DatasetName } from './data/index.js';
export { GaussianDiffusion } from './diffusion/gaussian-diffusion.js';
