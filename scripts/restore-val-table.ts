/**
 * Issue #7's choice of restoration design and defaults: one table over the validation runs of
 * `scripts/long-runs.sh restore-val` (runs/fashion-mnist/restore-val/<setting>/corruptions.json), each
 * candidate against the references (raw, diffpure, oneshot) of the `default` directory, same images.
 *   node --import tsx scripts/restore-val-table.ts [dir]
 * Columns: accuracy on clean images, the mean over corruptions at severity 3 (goal: >= clean - 5
 * points) and over severities 1-5, the worst per-corruption gap to diffpure (mean over severities;
 * goal: >= -2 points) and how many corruptions miss that, PSNR and agreement on clean images ("don't
 * change what is fine"), seconds per image.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lookup, mean as meanOf, type CellSummary } from '../src/bench/corruptions-report.js';

interface Run { dataset: string; options: { count: number; conditions: string[]; severities: number[] }; cells: CellSummary[]; get: ReturnType<typeof lookup> }

const root = process.argv[2] ?? 'runs/fashion-mnist/restore-val';
const dirs = readdirSync(root).filter((d) => existsSync(join(root, d, 'corruptions.json'))).sort((a, b) => (a === 'default' ? -1 : b === 'default' ? 1 : a.localeCompare(b)));
if (!dirs.includes('default')) throw new Error(`${root}/default/corruptions.json missing: the references (raw, diffpure) come from it`);
const load = (d: string): Run => { const r = JSON.parse(readFileSync(join(root, d, 'corruptions.json'), 'utf8')); return { ...r, get: lookup(r.cells) }; };
const ref = load('default');
const settings = (d: string, p: string) => JSON.parse(readFileSync(join(root, d, 'corruptions.settings.json'), 'utf8')).preprocessors[p];
const get = (r: Run, c: string, s: number, p: string) => r.get(c, s, p);
const mean = (v: (number | undefined)[]) => meanOf(v) ?? NaN;
const pct = (v: number) => (Number.isNaN(v) ? '-' : (100 * v).toFixed(1));
const conditions = ref.options.conditions;
const severities = ref.options.severities;
const n = ref.options.count;

const rows: string[] = [];
const line = (name: string, r: Run, p: string) => {
  const clean = get(r, 'clean', 0, p);
  const complete = conditions.every((c) => severities.every((s) => get(r, c, s, p)?.n === n)) && clean?.n === n;
  const s3 = mean(conditions.map((c) => get(r, c, 3, p)?.accuracy));
  const all = mean(conditions.flatMap((c) => severities.map((s) => get(r, c, s, p)?.accuracy)));
  const gaps = conditions.map((c) => ({ c, g: mean(severities.map((s) => { const a = get(r, c, s, p)?.accuracy; const d = get(ref, c, s, 'diffpure')?.accuracy; return a === undefined || d === undefined ? undefined : a - d; })) }))
    .filter((x) => !Number.isNaN(x.g)).sort((a, b) => a.g - b.g);
  const worst = gaps.length && p !== 'diffpure' ? `${(100 * gaps[0].g).toFixed(1)} (${gaps[0].c})` : '-';
  const misses = p === 'diffpure' ? '-' : String(gaps.filter((x) => x.g < -0.02).length);
  const secs = mean(r.cells.filter((x) => x.preprocessor === p).map((x) => x.secondsPerImage));
  const st = p === 'raw' || p === 'diffpure' || p === 'oneshot' ? '' : (() => { const o = settings(name, p); return o.restorer === 'cold' ? `cold, ${o.steps} steps` : `x0, t* ${o.tStar}, ${o.steps} steps`; })();
  rows.push(`| ${name} | ${p} | ${st} | ${pct(clean?.accuracy ?? NaN)} | ${pct(s3)} | ${pct(all)} | ${worst} | ${misses} | ${clean ? clean.psnr.toFixed(2) : '-'} | ${pct(clean?.agreement ?? NaN)} | ${secs.toFixed(3)} |${complete ? '' : ' (incomplete)'}`);
};
for (const p of ['raw', 'diffpure', 'oneshot']) if (ref.cells.some((c) => c.preprocessor === p)) line('default', ref, p);
for (const d of dirs) {
  const r = load(d);
  for (const p of ['restore', 'restore-cold', 'restore-x0']) if (r.cells.some((c) => c.preprocessor === p)) line(d, r, p);
}
const cleanRaw = get(ref, 'clean', 0, 'raw')?.accuracy ?? NaN;
process.stdout.write([
  `Restoration designs on ${ref.dataset} images 0-${n - 1}: ${conditions.length} corruptions (${conditions.join(', ')}) at severities ${severities.join(', ')}; clean accuracy ${pct(cleanRaw)}% (goal at severity 3: >= ${pct(cleanRaw - 0.05)}%).`,
  '',
  '| run | preprocessor | setting | clean acc % | severity 3 % | severities 1-5 % | worst gap to diffpure (points) | corruptions < -2 | clean PSNR dB | clean agreement % | s/image |',
  '|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|',
  ...rows, '',
].join('\n'));
