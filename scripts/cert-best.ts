/**
 * Issue #5's "best over every base and sigma": one certified-accuracy table over every CERTIFY log of a data set's
 * test images, wherever the run wrote it (any certify directory under runs/<ds>: runs/<ds>/certify,
 * runs/<ds>/experiments/<name>/certify, ...), and the
 * best figure at each radius over the complete logs, with the row it comes from.
 *   node --import tsx scripts/cert-best.ts [fashion-mnist|mnist] [--count 100]
 * A log counts when its settings say test split and it holds all of test images 0 .. count-1 (the README's
 * tables); a log still running is listed as partial and left out of the best. Logs made with other n or alpha
 * than the first complete one are listed but left out of the best too (their radii are not comparable).
 */
import { existsSync, readdirSync, readFileSync, type Dirent } from 'node:fs';
import { join } from 'node:path';
import { certifiedAccuracy, DEFAULT_RADII, readLog, settingsPath, type LogRow, type LogSettings } from '../certify/run.js';

const args = process.argv.slice(2);
const countAt = args.indexOf('--count');
const count = countAt >= 0 ? Number(args[countAt + 1]) : 100;
const dataset = args.find((a, i) => !a.startsWith('--') && (countAt < 0 || i !== countAt + 1)) ?? 'fashion-mnist';
if (!Number.isInteger(count) || count < 1) throw new Error(`--count must be a positive integer, got ${args[countAt + 1]}`);

interface Log { dir: string; base: string; sigma: number; n: number; alpha: number; rows: LogRow[]; complete: boolean }

const root = join('runs', dataset);
// every directory named certify under runs/<ds> (runs/<ds>/certify, experiments/<name>/certify, deeper stages)
const dirs = (readdirSync(root, { recursive: true, withFileTypes: true }) as Dirent[])
  .filter((e) => e.isDirectory() && e.name === 'certify')
  .map((e) => join(e.parentPath, e.name))
  .sort();
const logs: Log[] = [];
for (const dir of dirs) {
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith('.tsv')) continue;
    const settingsFile = settingsPath(join(dir, f));
    if (!existsSync(settingsFile)) continue;
    const s = JSON.parse(readFileSync(settingsFile, 'utf8')) as LogSettings;
    if (s.dataset !== `${dataset}/test`) continue;
    const rows = readLog(join(dir, f)).filter((r) => r.index < count);
    logs.push({ dir, base: s.base, sigma: s.sigma, n: s.n, alpha: s.alpha, rows, complete: rows.length === count });
  }
}
if (logs.length === 0) throw new Error(`no certify logs of ${dataset}'s test images under ${root}`);
const ref = logs.find((l) => l.complete);
const comparable = (l: Log) => l.complete && ref !== undefined && l.n === ref.n && l.alpha === ref.alpha;
logs.sort((a, b) => a.sigma - b.sigma || a.base.localeCompare(b.base) || a.dir.localeCompare(b.dir));

const pct = (v: number) => `${Math.round(100 * v)}%`;
const where = (l: Log) => `${l.base} ${l.sigma}`;
const out: string[] = [];
out.push(`Certified accuracy on ${dataset} test images 0-${count - 1}${ref ? ` (n ${ref.n}, alpha ${ref.alpha})` : ''}, every log under ${root}:`, '');
out.push(`| base | sigma | ${DEFAULT_RADII.map((r) => `r=${r}`).join(' | ')} | log |`);
out.push(`|---|---|${DEFAULT_RADII.map(() => '---:').join('|')}|---|`);
for (const l of logs) {
  const cells = DEFAULT_RADII.map((r) => (l.rows.length ? pct(certifiedAccuracy(l.rows, r)) : '-'));
  const note = l.complete ? (comparable(l) ? '' : ` (n ${l.n}, alpha ${l.alpha}: not in the best)`) : ` (partial: ${l.rows.length} of ${count}, not in the best)`;
  out.push(`| ${l.base} | ${l.sigma} | ${cells.join(' | ')} | ${l.dir}${note} |`);
}
const best = logs.filter(comparable);
if (best.length > 0) {
  const cells = DEFAULT_RADII.map((r) => {
    const acc = best.map((l) => certifiedAccuracy(l.rows, r));
    const top = Math.max(...acc);
    const from = best.filter((_, i) => acc[i] === top).map(where);
    return `**${pct(top)}** (${from.length > 2 ? `${from.slice(0, 2).join(', ')}, ...` : from.join(', ')})`;
  });
  out.push(`| **best of the ${best.length} complete logs** | | ${cells.join(' | ')} | |`);
}
console.log(out.join('\n'));
