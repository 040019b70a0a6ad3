/**
 * Certified-accuracy tables and curves from CERTIFY logs (as in locuslab/smoothing `analyze.py`): the
 * certified accuracy at radius r is the fraction of test images that CERTIFY classified correctly with a
 * certified radius >= r. At r = 0 it is the clean accuracy of the smoothed classifier (abstentions count wrong).
 */
import { maxCertifiableRadius } from './core.js';
import { legendWidth } from '../src/util/svg.js';

/** One certified test image, as logged. radius is 0 when prediction is ABSTAIN. */
export interface LogRow {
  index: number;
  label: number;
  prediction: number;
  radius: number;
  correct: boolean;
  seconds: number;
  pA: number;
  seed: number;
}

export interface Curve {
  base: string;
  /** the noise level, or 'best' for the best over sigma at each radius (per base) */
  sigma: number | 'best';
  images: number;
  /** certified accuracy at each of the report's radii */
  accuracy: number[];
  /** the largest radius CERTIFY can return with these n and alpha: sigma * PhiInv(alpha^(1/n)); null for 'best' */
  maxRadius: number | null;
}

export interface CertifyReport {
  dataset: string;
  n0: number;
  n: number;
  alpha: number;
  seed: number;
  radii: number[];
  curves: Curve[];
  logs: string[];
}

/** Radii 0, 0.25, ..., 2.0 (pixel units on [0, 1] images). */
export const DEFAULT_RADII = Array.from({ length: 9 }, (_, i) => i * 0.25);

/** Fraction of rows correct with radius >= r (0 for no rows). */
export function certifiedAccuracy(rows: readonly LogRow[], r: number): number {
  if (rows.length === 0) return 0;
  let k = 0;
  for (const row of rows) if (row.correct && row.radius >= r) k++;
  return k / rows.length;
}

/** One curve per (base, sigma) plus, per base with several sigmas, the best over sigma at each radius. */
export function buildCurves(
  groups: readonly { base: string; sigma: number; rows: readonly LogRow[] }[],
  radii: readonly number[],
  n: number,
  alpha: number,
): Curve[] {
  const curves: Curve[] = [];
  for (const base of [...new Set(groups.map((g) => g.base))]) {
    const mine = groups.filter((g) => g.base === base);
    const per = mine.map((g) => ({
      base,
      sigma: g.sigma,
      images: g.rows.length,
      accuracy: radii.map((r) => certifiedAccuracy(g.rows, r)),
      maxRadius: maxCertifiableRadius(g.sigma, n, alpha),
    }));
    curves.push(...per);
    if (per.length > 1) {
      curves.push({
        base,
        sigma: 'best',
        images: Math.min(...per.map((c) => c.images)),
        accuracy: radii.map((_, j) => Math.max(...per.map((c) => c.accuracy[j]))),
        maxRadius: null,
      });
    }
  }
  return curves;
}

const fmt = (v: number, d = 2) => v.toFixed(d);

export function renderMarkdown(rep: CertifyReport): string {
  const head = ['base', 'sigma', 'images', ...rep.radii.map((r) => `r=${fmt(r)}`), 'max radius'];
  const lines = [
    `# Certified accuracy: ${rep.dataset}`,
    '',
    `Randomized smoothing (Cohen et al. 2019), CERTIFY with n0 = ${rep.n0}, n = ${rep.n}, alpha = ${rep.alpha}, seed = ${rep.seed}.`,
    'Each entry is the fraction of images certified correct at L2 radius >= r (pixel units, images in [0, 1]);',
    'each certificate holds with probability at least 1 - alpha. "max radius" is sigma * PhiInv(alpha^(1/n)),',
    'the largest radius these n and alpha can certify at that sigma. "best" takes, at each radius, the best sigma',
    '(a selection made after seeing the test results, as in Cohen et al.\'s tables).',
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
  ];
  for (const c of rep.curves) {
    const sigma = c.sigma === 'best' ? 'best' : String(c.sigma);
    const maxR = c.maxRadius === null ? '' : fmt(c.maxRadius);
    lines.push(`| ${c.base} | ${sigma} | ${c.images} | ${c.accuracy.map((a) => fmt(a, 3)).join(' | ')} | ${maxR} |`);
  }
  return lines.join('\n') + '\n';
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const DASHES = ['', '6,3', '2,2', '8,3,2,3'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * Certified accuracy vs radius as a standalone SVG: one step curve per (base, sigma), colour by sigma,
 * dash pattern by base.
 */
export function renderSvg(groups: readonly { base: string; sigma: number; rows: readonly LogRow[] }[], title: string): string {
  const R = legendWidth(groups.map((g) => `${g.base}, sigma=${g.sigma}`), 46, 170), P = 414; // legend column, plot width
  const H = 400, L = 56, T = 36, B = 44, W = L + P + R; // prettier-ignore
  const maxObserved = Math.max(0, ...groups.flatMap((g) => g.rows.map((r) => r.radius)));
  const xMax = Math.max(2, Math.ceil(maxObserved / 0.25) * 0.25);
  const px = (r: number) => L + (r / xMax) * P;
  const py = (a: number) => T + (1 - a) * (H - T - B);
  const sigmas = [...new Set(groups.map((g) => g.sigma))].sort((a, b) => a - b);
  const bases = [...new Set(groups.map((g) => g.base))];
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="20" font-size="14">${esc(title)}</text>`,
    `<line x1="${L}" y1="${py(0)}" x2="${px(xMax)}" y2="${py(0)}" stroke="black"/>`,
    `<line x1="${L}" y1="${py(0)}" x2="${L}" y2="${py(1)}" stroke="black"/>`,
  ];
  for (let r = 0; r <= xMax + 1e-9; r += 0.25) {
    out.push(`<line x1="${px(r)}" y1="${py(0)}" x2="${px(r)}" y2="${py(0) + 4}" stroke="black"/>`);
    if (Math.abs(r - Math.round(r * 2) / 2) < 1e-9) out.push(`<text x="${px(r)}" y="${py(0) + 17}" text-anchor="middle">${fmt(r, 1)}</text>`);
  }
  for (let a = 0; a <= 1 + 1e-9; a += 0.2) {
    out.push(`<line x1="${L - 4}" y1="${py(a)}" x2="${px(xMax)}" y2="${py(a)}" stroke="#ddd"/>`);
    out.push(`<text x="${L - 8}" y="${py(a) + 4}" text-anchor="end">${fmt(a, 1)}</text>`);
  }
  out.push(`<text x="${(L + px(xMax)) / 2}" y="${H - 8}" text-anchor="middle">L2 radius (pixels in [0, 1])</text>`);
  out.push(`<text transform="translate(16 ${(T + py(0)) / 2}) rotate(-90)" text-anchor="middle">certified accuracy</text>`);
  groups.forEach((g, k) => {
    const color = COLORS[sigmas.indexOf(g.sigma) % COLORS.length];
    const dash = DASHES[bases.indexOf(g.base) % DASHES.length];
    // step function: accuracy drops just after each correct row's radius
    const radii = g.rows.filter((r) => r.correct).map((r) => r.radius).sort((a, b) => a - b);
    const total = g.rows.length || 1;
    const pts: string[] = [`${px(0)},${py(radii.length / total)}`];
    radii.forEach((r, i) => {
      const x = px(Math.min(r, xMax));
      pts.push(`${x},${py((radii.length - i) / total)}`, `${x},${py((radii.length - i - 1) / total)}`);
    });
    pts.push(`${px(xMax)},${py(0)}`);
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${pts.join(' ')}"/>`);
    const ly = T + 10 + k * 18;
    out.push(`<line x1="${W - R + 12}" y1="${ly}" x2="${W - R + 40}" y2="${ly}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    out.push(`<text x="${W - R + 46}" y="${ly + 4}">${esc(`${g.base}, sigma=${g.sigma}`)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
