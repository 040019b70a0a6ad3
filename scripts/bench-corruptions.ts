/**
 * Corruption benchmark (the same as `advpurify bench corruptions`):
 *   node --import tsx scripts/bench-corruptions.ts [--split test|val|fixture] [--count 1000] [--degradations gaussian-noise,pixelate,mix-2]
 *     [--severities 1,2,3,4,5] [--preprocessors raw,diffpure,oneshot,restore,restore-cold,jpeg,bitdepth,median] [--chunk 50]
 *     [--out runs/fashion-mnist/bench-corruptions] [--seed 0]
 * Resumable: rerun the same command to continue; the report is rewritten from the log at the end.
 */
import { parseArgs } from 'node:util';
import { initBackend } from '../src/backend/index.js';
import { benchCorruptions } from '../src/bench/corruptions.js';

const names = ['split', 'count', 'degradations', 'severities', 'preprocessors', 'chunk', 'out', 'seed', 'model'];
const { values: f } = parseArgs({ options: Object.fromEntries(names.map((n) => [n, { type: 'string' as const }])) });
const num = (k: string) => (f[k] === undefined ? undefined : Number(f[k]));
const list = (k: string) => (f[k] as string | undefined)?.split(',').map((s) => s.trim()).filter(Boolean);

await initBackend();
const r = await benchCorruptions({
  split: f.split as string | undefined, count: num('count'), degradations: list('degradations'), severities: list('severities')?.map(Number),
  preprocessors: list('preprocessors'), chunk: num('chunk'), out: f.out as string | undefined, seed: num('seed'), model: f.model as string | undefined,
});
process.stdout.write(r.markdown);
process.stderr.write(`bench corruptions: wrote ${r.files.join(', ')}\n`);
