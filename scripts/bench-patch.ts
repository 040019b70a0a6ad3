/**
 * Patch benchmark (the same as `advpurify bench patch`, with every knob):
 *   node --import tsx scripts/bench-patch.ts [--count 200] [--sizes 4,6,8] [--defences none,diffpure,patch,auto]
 *     [--attacks perimage,universal] [--steps 50] [--restarts 2] [--candidates 8] [--eot 2] [--gradient bpda|full]
 *     [--universal-steps 100] [--universal-batch 16] [--inpaint-steps 20] [--resample 2] [--chunk 10]
 *     [--out runs/fashion-mnist/bench-patch] [--split test|fixture] [--seed 0]
 * Resumable: rerun the same command to continue; the report is rewritten from the logs at the end.
 */
import { parseArgs } from 'node:util';
import { initBackend } from '../src/backend/index.js';
import { benchPatch, type DefenceName, type PatchAttackName } from '../src/purify/patch/bench.js';

const names = ['count', 'sizes', 'defences', 'attacks', 'steps', 'restarts', 'candidates', 'eot', 'gradient', 'universal-steps', 'universal-batch', 'inpaint-steps', 'resample', 'chunk', 'out', 'split', 'seed'];
const { values: f } = parseArgs({ options: Object.fromEntries(names.map((n) => [n, { type: 'string' as const }])) });
const num = (k: string) => (f[k] === undefined ? undefined : Number(f[k]));
const list = (k: string) => (f[k] as string | undefined)?.split(',').map((s) => s.trim()).filter(Boolean);

await initBackend();
const inpaint = { steps: num('inpaint-steps'), resample: num('resample') };
const r = await benchPatch({
  count: num('count'), sizes: list('sizes')?.map(Number), defences: list('defences') as DefenceName[] | undefined,
  attacks: list('attacks') as PatchAttackName[] | undefined, steps: num('steps'), restarts: num('restarts'), candidates: num('candidates'), eot: num('eot'),
  gradient: f.gradient as 'full' | 'bpda' | undefined, universalSteps: num('universal-steps'), universalBatch: num('universal-batch'),
  chunk: num('chunk'), out: f.out as string | undefined, split: f.split as string | undefined, seed: num('seed'),
  patch: inpaint.steps || inpaint.resample ? { inpaint } : undefined,
});
process.stdout.write(r.markdown);
process.stderr.write(`bench patch: wrote ${r.files.join(', ')}\n`);
