/**
 * The corruption benchmark's outputs, rebuilt from its log on every run: corruptions.json (every cell),
 * corruptions.md (summary, the issue's goals, one accuracy heat-map table per preprocessor),
 * corruptions-heatmap.svg (degradation x severity, a panel per preprocessor) and
 * corruptions-severity.svg (mean accuracy against severity).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChunkRow, CorruptionBenchOptions } from './corruptions.js';
import { legendWidth } from '../util/svg.js';

export interface CellSummary {
  condition: string;
  severity: number; // 0 = clean
  preprocessor: string;
  n: number;
  accuracy: number;
  /** same prediction as the classifier's on the clean, unprocessed image */
  agreement: number;
  psnr: number; // mean over images, dB
  ssim: number;
  secondsPerImage: number;
}

interface Layout {
  count: number;
  conditions: string[];
  severities: number[];
  preprocessors: string[];
}

export function summarise(rows: ChunkRow[]): CellSummary[] {
  const groups = new Map<string, ChunkRow[]>();
  for (const r of rows) {
    const k = `${r.condition}|${r.severity}|${r.preprocessor}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const s = (f: (r: ChunkRow) => number) => g.reduce((a, r) => a + f(r), 0);
    const n = s((r) => r.n) || 1;
    return {
      condition: g[0].condition, severity: g[0].severity, preprocessor: g[0].preprocessor, n: s((r) => r.n),
      accuracy: s((r) => r.correct) / n, agreement: s((r) => r.agree) / n, psnr: s((r) => r.psnr) / n, ssim: s((r) => r.ssim) / n,
      secondsPerImage: s((r) => r.seconds) / n,
    };
  });
}

const pct = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : (100 * v).toFixed(1));
/** Mean of the defined, non-NaN values (undefined when there are none). */
export const mean = (v: (number | undefined)[]) => {
  const ok = v.filter((x): x is number => x !== undefined && !Number.isNaN(x));
  return ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : undefined;
};

/** Cell getter by (condition, severity, preprocessor). */
export function lookup(cells: CellSummary[]) {
  const m = new Map(cells.map((c) => [`${c.condition}|${c.severity}|${c.preprocessor}`, c]));
  return (condition: string, severity: number, preprocessor: string) => m.get(`${condition}|${severity}|${preprocessor}`);
}

/** Mean accuracy over the corruptions at one severity (undefined when none was run). */
function severityMean(get: ReturnType<typeof lookup>, L: Layout, p: string, s: number): number | undefined {
  return mean(L.conditions.map((c) => get(c, s, p)?.accuracy));
}

function goals(get: ReturnType<typeof lookup>, L: Layout): string[] {
  const has = (p: string) => L.preprocessors.includes(p);
  if (!has('restore')) return ['No restore results in this run (the restoration model is not trained yet, or it was not selected).'];
  const out: string[] = [];
  const clean = get('clean', 0, 'raw')?.accuracy;
  const s3 = severityMean(get, L, 'restore', 3);
  if (clean !== undefined && s3 !== undefined) {
    out.push(`- Accuracy through restore at severity 3, mean over ${L.conditions.length} corruptions: ${pct(s3)}%; clean accuracy ${pct(clean)}%; ` +
      `goal >= clean - 5 points: **${s3 >= clean - 0.05 ? 'met' : 'not met'}**.`);
  }
  if (has('diffpure')) {
    const gaps = L.conditions.map((c) => ({ c, gap: mean(L.severities.map((s) => { const r = get(c, s, 'restore')?.accuracy; const d = get(c, s, 'diffpure')?.accuracy; return r === undefined || d === undefined ? undefined : r - d; })) }))
      .filter((g): g is { c: string; gap: number } => g.gap !== undefined).sort((a, b) => a.gap - b.gap);
    if (gaps.length) {
      out.push(`- restore minus diffpure, per corruption (mean over severities): worst ${gaps[0].c} ${(100 * gaps[0].gap).toFixed(1)} points, best ${gaps[gaps.length - 1].c} ${(100 * gaps[gaps.length - 1].gap).toFixed(1)} points; ` +
        `goal >= -2 points on every corruption: **${gaps[0].gap >= -0.02 ? 'met' : 'not met'}**.`);
    }
  }
  const c = get('clean', 0, 'restore');
  if (c) out.push(`- Clean images through restore: PSNR ${c.psnr.toFixed(2)} dB, SSIM ${c.ssim.toFixed(3)}, agreement with the unprocessed prediction ${pct(c.agreement)}%.`);
  return out;
}

export function markdown(cells: CellSummary[], L: Layout, dataName: string, notes: string[] = []): string {
  const get = lookup(cells);
  const sev = L.severities;
  const lines = [
    `# Corruption benchmark: ${dataName}, ${L.count} images`,
    '',
    'Classifier accuracy (%) behind each preprocessor on every degradation of src/degradations at each severity, random mixtures ' +
      'of 2 and 3 degradations (mix-2, mix-3) and the clean images. PSNR (dB) and SSIM: the preprocessor\'s output against the clean image. ' +
      'Agreement: the same prediction as on the clean, unprocessed image.',
    ...notes.map((n) => `\nNote: ${n}`),
    '',
    '## Summary',
    '',
    `| preprocessor | clean | ${sev.map((s) => `severity ${s}`).join(' | ')} | all corruptions | PSNR | SSIM | clean PSNR | clean agreement | s/image |`,
    `|---|---|${sev.map(() => '---').join('|')}|---|---|---|---|---|---|`,
    ...L.preprocessors.map((p) => {
      const corrupt = cells.filter((c) => c.preprocessor === p && c.condition !== 'clean');
      const cl = get('clean', 0, p);
      const cols = [p, pct(cl?.accuracy), ...sev.map((s) => pct(severityMean(get, L, p, s))), pct(mean(corrupt.map((c) => c.accuracy))),
        mean(corrupt.map((c) => c.psnr))?.toFixed(2) ?? '-', mean(corrupt.map((c) => c.ssim))?.toFixed(3) ?? '-',
        cl ? cl.psnr.toFixed(2) : '-', pct(cl?.agreement), mean(cells.filter((c) => c.preprocessor === p).map((c) => c.secondsPerImage))?.toFixed(4) ?? '-'];
      return `| ${cols.join(' | ')} |`;
    }),
    '',
    '## Goals (issue 7)',
    '',
    ...goals(get, L),
    '',
    '## Accuracy (%) by degradation and severity',
  ];
  for (const p of L.preprocessors) {
    lines.push('', `### ${p}`, '', `| degradation | ${sev.join(' | ')} | mean |`, `|---|${sev.map(() => '---').join('|')}|---|`);
    for (const c of L.conditions) {
      const acc = sev.map((s) => get(c, s, p)?.accuracy);
      lines.push(`| ${c} | ${acc.map(pct).join(' | ')} | ${pct(mean(acc))} |`);
    }
  }
  return lines.join('\n') + '\n';
}

/** Accuracy 0..1 -> red (0) .. yellow .. green (1). */
const heat = (a: number) => `hsl(${Math.round(120 * Math.max(0, Math.min(1, a)))}, 65%, ${Math.round(55 - 10 * a)}%)`;

export function heatmapSvg(cells: CellSummary[], L: Layout): string {
  const get = lookup(cells);
  const cw = 30, ch = 16, label = 120, gap = 24, top = 56; // prettier-ignore
  const perRow = Math.min(4, L.preprocessors.length);
  const cellW = Math.max(cw, Math.ceil(90 / L.severities.length)); // a panel is wide enough for its name
  const panelW = L.severities.length * cellW;
  const panelH = L.conditions.length * ch;
  const rowsOfPanels = Math.ceil(L.preprocessors.length / perRow);
  const W = Math.max(label + perRow * (panelW + gap) + 10, 560);
  const H = top + rowsOfPanels * (panelH + 44) + 10;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="10">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="10" y="20" font-size="14">Accuracy (%) by degradation (rows) and severity (columns), ${L.count} images</text>`,
  ];
  L.preprocessors.forEach((p, k) => {
    const x0 = label + (k % perRow) * (panelW + gap);
    const y0 = top + Math.floor(k / perRow) * (panelH + 44);
    out.push(`<text x="${x0 + panelW / 2}" y="${y0 - 18}" text-anchor="middle" font-size="12">${p}</text>`);
    L.severities.forEach((s, j) => out.push(`<text x="${x0 + j * cellW + cellW / 2}" y="${y0 - 4}" text-anchor="middle">${s}</text>`));
    L.conditions.forEach((c, i) => {
      if (k % perRow === 0) out.push(`<text x="${x0 - 6}" y="${y0 + i * ch + ch / 2 + 3}" text-anchor="end">${c}</text>`);
      L.severities.forEach((s, j) => {
        const a = get(c, s, p)?.accuracy;
        const [x, y] = [x0 + j * cellW, y0 + i * ch];
        out.push(a === undefined ? `<rect x="${x}" y="${y}" width="${cellW - 1}" height="${ch - 1}" fill="#eee"/>`
          : `<rect x="${x}" y="${y}" width="${cellW - 1}" height="${ch - 1}" fill="${heat(a)}"/><text x="${x + cellW / 2}" y="${y + ch / 2 + 3}" text-anchor="middle" font-size="8">${Math.round(100 * a)}</text>`);
      });
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

const COLORS = ['#555555', '#1f77b4', '#ff7f0e', '#d62728', '#9467bd', '#2ca02c', '#8c564b', '#e377c2'];

export function severitySvg(cells: CellSummary[], L: Layout): string {
  const get = lookup(cells);
  const xs = [0, ...L.severities];
  const R = legendWidth(L.preprocessors, 32, 130), P = 454; // legend column, plot width
  const H = 360, Lm = 56, T = 40, B = 50, W = Lm + P + R; // prettier-ignore
  const px = (i: number) => Lm + (i / Math.max(1, xs.length - 1)) * P;
  const py = (a: number) => T + (1 - a) * (H - T - B);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${Lm}" y="22" font-size="14">Accuracy against severity (mean over ${L.conditions.length} corruptions; 0 = clean)</text>`,
  ];
  for (let a = 0; a <= 1.0001; a += 0.2) out.push(`<line x1="${Lm}" y1="${py(a)}" x2="${W - R}" y2="${py(a)}" stroke="#ddd"/><text x="${Lm - 6}" y="${py(a) + 4}" text-anchor="end">${a.toFixed(1)}</text>`);
  xs.forEach((s, i) => out.push(`<text x="${px(i)}" y="${H - B + 18}" text-anchor="middle">${s}</text>`));
  L.preprocessors.forEach((p, k) => {
    const pts = xs.map((s, i) => ({ i, a: s === 0 ? get('clean', 0, p)?.accuracy : severityMean(get, L, p, s) })).filter((q) => q.a !== undefined);
    const color = COLORS[k % COLORS.length];
    if (pts.length) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((q) => `${px(q.i).toFixed(1)},${py(q.a!).toFixed(1)}`).join(' ')}"/>`);
    for (const q of pts) out.push(`<circle cx="${px(q.i).toFixed(1)}" cy="${py(q.a!).toFixed(1)}" r="3" fill="${color}"/>`);
    out.push(`<rect x="${W - R + 14}" y="${T + k * 20}" width="12" height="12" fill="${color}"/><text x="${W - R + 32}" y="${T + k * 20 + 11}">${p}</text>`);
  });
  out.push(`<text x="${(Lm + W - R) / 2}" y="${H - 10}" text-anchor="middle">severity</text>`, '</svg>');
  return out.join('\n') + '\n';
}

export function writeCorruptionReport(o: CorruptionBenchOptions, rows: ChunkRow[], L: Layout): { markdown: string; files: string[]; cells: CellSummary[] } {
  const cells = summarise(rows);
  const md = markdown(cells, L, o.data.name, o.notes);
  const files = ['corruptions.json', 'corruptions.md', 'corruptions-heatmap.svg', 'corruptions-severity.svg'].map((f) => join(o.outDir, f));
  const options = { count: L.count, conditions: L.conditions, severities: L.severities, preprocessors: L.preprocessors, chunk: o.chunk ?? 50, seed: o.seed ?? 0, notes: o.notes ?? [] };
  writeFileSync(files[0], JSON.stringify({ dataset: o.data.name, options, cells }, null, 1) + '\n');
  writeFileSync(files[1], md);
  writeFileSync(files[2], heatmapSvg(cells, L));
  writeFileSync(files[3], severitySvg(cells, L));
  return { markdown: md, files: [join(o.outDir, 'corruptions.tsv'), ...files], cells };
}
