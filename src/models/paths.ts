import { join } from 'node:path';
import { packageRoot } from '../data/index.js';

/** Directory of shipped weights (override with ADVPURIFY_MODELS). */
export function modelsDir(): string {
  return process.env.ADVPURIFY_MODELS ?? join(packageRoot(), 'models');
}
