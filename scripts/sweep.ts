/**
 * Validation sweep for the purifier's defaults (`npm run sweep`): clean accuracy of the shipped
 * classifier after purification, on validation images carved from the training data (never the test set).
 * Usage: node --import tsx scripts/sweep.ts [count=500] [t*,t*,...]
 * With a list of t*, only diffpure at those t* (5 steps) is measured (the robustness tuning's candidates).
 */
import { initBackend } from '../src/backend/index.js';
import { loadDataset, take } from '../src/data/index.js';
import { createPurifier, loadClassifier, type PurifyOptions } from '../src/purify/index.js';
import { evaluate } from '../src/cli/commands.js';

const count = Number(process.argv[2] ?? 500);
await initBackend();
const val = take(loadDataset('fashion-mnist', 'val'), count);
const clf = await loadClassifier('fashion-mnist');
const only = process.argv[3]?.split(',').map(Number);
const configs: PurifyOptions[] = only ? only.map((tStar) => ({ mode: 'diffpure' as const, tStar, steps: 5 })) : [
  { mode: 'none' },
  ...[0.1, 0.25, 0.5].map((sigma) => ({ mode: 'oneshot' as const, sigma })),
  ...[50, 100, 200, 300, 450, 600].flatMap((tStar) => [1, 5, 10].map((steps) => ({ mode: 'diffpure' as const, tStar, steps }))),
  { mode: 'diffpure', tStar: 200, steps: 10, sampler: 'ddim' },
];
console.log(`| mode | t* | steps | sampler | val accuracy (${val.count}) |`);
console.log('|---|---|---|---|---|');
for (const c of configs) {
  const p = await createPurifier({ ...c, seed: 7 });
  const acc = evaluate(clf, val, c.mode === 'none' ? undefined : p, 50, JSON.stringify(c));
  console.log(`| ${p.options.mode} | ${c.mode === 'none' ? '-' : p.t} | ${c.mode === 'diffpure' ? p.options.steps : c.mode === 'oneshot' ? 1 : 0} | ${c.mode === 'diffpure' ? p.options.sampler : '-'} | ${(100 * acc).toFixed(1)}% |`);
}
