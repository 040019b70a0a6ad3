/**
 * What a CERTIFY log's radii would become with more noise draws, as a projection (not a certificate): each image's
 * count of top-class draws k is recovered from its logged pA (the smallest k whose Clopper-Pearson bound reaches it),
 * its observed rate k / n is taken as exact, and the bound and radius are recomputed at n2 draws. It answers "how much
 * of a gap is the sample size" before paying for the real run (n 100,000 costs 10x n 10,000).
 *   node --import tsx scripts/cert-project.ts <log.tsv> [--n2 100000] [--radii 0,0.5,1,1.5,2]
 * n, alpha and sigma come from the log's settings file.
 */
import { readFileSync } from 'node:fs';
import { certifiedRadius, lowerConfidenceBound } from '../certify/core.js';
import { readLog, settingsPath, type LogSettings } from '../certify/run.js';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const path = args[0];
if (!path || path.startsWith('--')) {
  console.error('usage: cert-project.ts <log.tsv> [--n2 100000] [--radii 0,0.5,1,1.5,2]');
  process.exit(2);
}
const n2 = Number(flag('n2', '100000'));
const radii = flag('radii', '0,0.5,1,1.5,2').split(',').map(Number);
const s = JSON.parse(readFileSync(settingsPath(path), 'utf8')) as LogSettings;
const rows = [...new Map(readLog(path).map((r) => [r.index, r])).values()]; // two runs from opposite ends may both log one image

/** Smallest k in [0, n] whose bound, rounded as the log writes it (6 decimals), reaches the logged pA (it rises with k). */
function countFor(pA: number): number {
  let lo = 0;
  let hi = s.n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (Number(lowerConfidenceBound(mid, s.n, s.alpha).toFixed(6)) >= pA) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

const now = radii.map(() => 0);
const projected = radii.map(() => 0);
for (const r of rows) {
  if (!r.correct || !(r.pA > 0.5)) continue; // abstained or wrong: no radius either way
  const k2 = Math.round((countFor(r.pA) / s.n) * n2);
  const pA2 = lowerConfidenceBound(k2, n2, s.alpha);
  const r2 = pA2 > 0.5 ? certifiedRadius(s.sigma, pA2) : -1;
  radii.forEach((rad, i) => {
    if (r.radius >= rad) now[i]++;
    if (r2 >= rad) projected[i]++;
  });
}
const pct = (c: number) => `${Math.round((100 * c) / rows.length)}%`;
console.log(`${path}: ${s.base}, sigma ${s.sigma}, ${rows.length} images; certified at n ${s.n} -> projected at n ${n2} (alpha ${s.alpha})`);
console.log(radii.map((rad, i) => `r ${rad}: ${pct(now[i])} -> ${pct(projected[i])}`).join(', '));
