/**
 * Robust-accuracy tables and curves from the per-image logs: for each (defence, eps), clean accuracy,
 * robust accuracy on one fresh draw, worst-of-k, and the accuracy left after each attack of the sequence.
 */
import type { ImageRow } from './evaluate.js';
import { legendWidth } from '../../src/util/svg.js';

export interface ResultRow {
  defense: string;
  eps: number;
  images: number;
  clean: number;
  robust: number; // one draw
  worstOfK: number; // all k draws
  draws: number;
  /** accuracy left after the attacks up to and including this one (one draw) */
  afterAttack: Record<string, number>;
  /** mean seconds of attack per image (over the images each attack ran on) */
  secondsPerImage: Record<string, number>;
  attackNote: string;
}

export interface RobustnessReport {
  dataset: string;
  split: string;
  count: number;
  norm: string;
  eps: number[];
  preset: string;
  settings: Record<string, number>;
  attacks: string[];
  seed: number;
  machine: string;
  backend: string;
  date: string;
  /** wall time of the invocation that wrote the report (a resumed run counts only its own part) */
  wallSeconds: number;
  /** attack seconds summed over all logged rows (resumed ones included) */
  computeSeconds: number;
  results: ResultRow[];
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((s, v) => s + v, 0) / xs.length : 0);

/** Summarise one defence's rows at one eps (rows must be exactly the images evaluated). */
export function summarise(defense: string, eps: number, rows: readonly ImageRow[], attacks: readonly string[], draws: number, attackNote: string): ResultRow {
  const ok = (r: ImageRow, upTo: number, allDraws: boolean) =>
    r.clean === 1 && attacks.slice(0, upTo + 1).every((a) => { const f = r.attacks[a]; return f != null && (allDraws ? f.every((v) => v === 1) : f[0] === 1); });
  const last = attacks.length - 1;
  const afterAttack: Record<string, number> = {};
  const secondsPerImage: Record<string, number> = {};
  attacks.forEach((a, j) => {
    afterAttack[a] = mean(rows.map((r) => (ok(r, j, false) ? 1 : 0)));
    secondsPerImage[a] = mean(rows.filter((r) => r.seconds[a] !== undefined).map((r) => r.seconds[a]));
  });
  return {
    defense,
    eps,
    images: rows.length,
    clean: mean(rows.map((r) => r.clean)),
    robust: mean(rows.map((r) => (ok(r, last, false) ? 1 : 0))),
    worstOfK: mean(rows.map((r) => (ok(r, last, true) ? 1 : 0))),
    draws,
    afterAttack,
    secondsPerImage,
    attackNote,
  };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

export function renderMarkdown(rep: RobustnessReport): string {
  const s = rep.settings;
  const budget = rep.attacks
    .map((a) => (a === 'pgd' ? `PGD-${s.pgdSteps} (CW margin loss, step 2.5·eps/steps, random start)` : a === 'apgd' ? `APGD-CE-${s.apgdSteps}` : `Square ${s.squareQueries} queries`))
    .join(', then ');
  const lines = [
    `# Robust accuracy: ${rep.dataset} ${rep.split}, ${rep.count} images, ${rep.norm === 'Linf' ? 'L-inf' : 'L2'} eps ${rep.eps.join(', ')}`,
    '',
    `Preset **${rep.preset}**: ${budget}; each attack runs on the images no earlier attack broke (AutoAttack order).`,
    `Randomized defences: gradients averaged over EOT-${s.eot} draws; each adversarial image is judged on ${s.draws} fresh draws`,
    '("1 draw": correct on the first; "worst-of-k": correct on all k). Deterministic defences are judged once.',
    '"after <attack>": accuracy left after the attacks up to and including it (1 draw).',
    `Seed ${rep.seed}. ${rep.date}, ${rep.machine}, backend ${rep.backend}; wall time of this invocation ${rep.wallSeconds.toFixed(0)} s, attack time in the logs ${rep.computeSeconds.toFixed(0)} s.`,
    '',
  ];
  const head = ['defence', 'eps', 'images', 'clean', 'robust (1 draw)', 'worst-of-k', ...rep.attacks.map((a) => `after ${a}`), 's/image', 'attack gradient'];
  lines.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
  for (const r of rep.results) {
    const sec = Object.values(r.secondsPerImage).reduce((a, b) => a + b, 0);
    const k = r.draws > 1 ? `${pct(r.worstOfK)} (k=${r.draws})` : pct(r.worstOfK);
    lines.push(`| ${r.defense} | ${r.eps} | ${r.images} | ${pct(r.clean)} | ${pct(r.robust)} | ${k} | ${rep.attacks.map((a) => pct(r.afterAttack[a] ?? 0)).join(' | ')} | ${sec.toFixed(1)} | ${r.attackNote} |`);
  }
  return lines.join('\n') + '\n';
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Robust accuracy vs eps, one colour per defence: solid = 1 draw, dashed = worst-of-k where it differs. */
export function renderSvg(rep: RobustnessReport): string {
  const defenses = [...new Set(rep.results.map((r) => r.defense))];
  const R = legendWidth([...defenses, `worst-of-${rep.settings.draws}`], 44, 190), P = 414; // legend column, plot width
  const H = 400, L = 56, T = 36, B = 44, W = L + P + R; // prettier-ignore
  const xMax = Math.max(...rep.eps, 1e-9) * 1.05;
  const px = (e: number) => L + (e / xMax) * P;
  const py = (a: number) => T + (1 - a) * (H - T - B);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="20" font-size="14">${esc(`Robust accuracy, ${rep.dataset} (${rep.count} images, ${rep.preset} preset)`)}</text>`,
    `<line x1="${L}" y1="${py(0)}" x2="${px(xMax)}" y2="${py(0)}" stroke="black"/>`,
    `<line x1="${L}" y1="${py(0)}" x2="${L}" y2="${py(1)}" stroke="black"/>`,
  ];
  for (let a = 0; a <= 1 + 1e-9; a += 0.2) {
    out.push(`<line x1="${L - 4}" y1="${py(a)}" x2="${px(xMax)}" y2="${py(a)}" stroke="#ddd"/>`, `<text x="${L - 8}" y="${py(a) + 4}" text-anchor="end">${a.toFixed(1)}</text>`);
  }
  for (const e of [0, ...rep.eps]) {
    out.push(`<line x1="${px(e)}" y1="${py(0)}" x2="${px(e)}" y2="${py(0) + 4}" stroke="black"/>`, `<text x="${px(e)}" y="${py(0) + 17}" text-anchor="middle">${e}</text>`);
  }
  out.push(`<text x="${(L + px(xMax)) / 2}" y="${H - 8}" text-anchor="middle">${rep.norm === 'Linf' ? 'L-inf' : 'L2'} epsilon (pixels in [0, 1])</text>`);
  out.push(`<text transform="translate(16 ${(T + py(0)) / 2}) rotate(-90)" text-anchor="middle">robust accuracy</text>`);
  defenses.forEach((d, k) => {
    const color = COLORS[k % COLORS.length];
    const pts = rep.results.filter((r) => r.defense === d).sort((a, b) => a.eps - b.eps);
    // the curve starts at eps = 0 with the clean accuracy of the first point
    const curve = (v: (r: ResultRow) => number) => [`${px(0)},${py(pts[0].clean)}`, ...pts.map((r) => `${px(r.eps)},${py(v(r))}`)].join(' ');
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${curve((r) => r.robust)}"/>`);
    if (pts.some((r) => r.worstOfK !== r.robust)) out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" stroke-dasharray="5,3" points="${curve((r) => r.worstOfK)}"/>`);
    for (const r of pts) out.push(`<circle cx="${px(r.eps)}" cy="${py(r.robust)}" r="3" fill="${color}"/>`);
    const y = T + 10 + 18 * k;
    out.push(`<line x1="${W - R + 14}" y1="${y}" x2="${W - R + 38}" y2="${y}" stroke="${color}" stroke-width="2"/>`, `<text x="${W - R + 44}" y="${y + 4}">${esc(d)}</text>`);
  });
  const y = T + 10 + 18 * defenses.length + 8;
  out.push(`<line x1="${W - R + 14}" y1="${y}" x2="${W - R + 38}" y2="${y}" stroke="black" stroke-dasharray="5,3"/>`, `<text x="${W - R + 44}" y="${y + 4}">worst-of-${rep.settings.draws}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
