/** The patch benchmark's outputs: patch-bench.json, patch-bench.md, patch-bench.svg and patch-grid.png. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { tf, type Tensor4D } from '../../backend/index.js';
import type { Box } from './box.js';
import { purifyAuto, purifyPatch } from './index.js';
import { Purifier } from '../purifier.js';
import type { PatchBenchOptions } from './bench.js';
import { cleanserMarkdown, type CleanserSummary } from './bench-patchcleanser.js';
import { legendWidth } from '../../util/svg.js';

export interface BenchRow {
  index: number;
  label: number;
  prediction: number;
  correct: boolean;
  /** 1/0: the localiser reported a patch; -1: the defence has no localiser */
  detected: number;
  /** IoU of the found square with the true box; 0 when nothing was detected; -1 when not applicable */
  iou: number;
  box: Box;
  seconds: number;
}

export interface Summary {
  attack: string;
  defence: string;
  size: number;
  n: number;
  accuracy: number;
  /** mean IoU over rows with a localiser (null without one) */
  iou: number | null;
  detectionRate: number | null;
  secondsPerImage: number;
}

function summarise(g: { attack: string; defence: string; size: number; rows: BenchRow[] }): Summary {
  const n = g.rows.length || 1;
  const loc = g.rows.filter((r) => r.detected >= 0);
  const withBox = loc.filter((r) => r.iou >= 0);
  return {
    attack: g.attack, defence: g.defence, size: g.size, n: g.rows.length,
    accuracy: g.rows.filter((r) => r.correct).length / n,
    iou: withBox.length ? withBox.reduce((s, r) => s + r.iou, 0) / withBox.length : null,
    detectionRate: loc.length ? loc.filter((r) => r.detected === 1).length / loc.length : null,
    secondsPerImage: g.rows.reduce((s, r) => s + r.seconds, 0) / n,
  };
}

const pct = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${(100 * v).toFixed(1)}%`);

function markdown(sums: Summary[], sizes: number[], o: PatchBenchOptions): string {
  const get = (a: string, d: string, s: number) => sums.find((x) => x.attack === a && x.defence === d && x.size === s);
  const defs = [...new Set(sums.map((s) => s.defence))];
  const attacks = [...new Set(sums.map((s) => s.attack))].filter((a) => a !== 'clean');
  const head = ['defence', 'clean acc', ...attacks.flatMap((a) => sizes.map((s) => `${a} ${s}x${s}`)), ...sizes.map((s) => `IoU ${s}x${s}`), 'clean images inpainted'];
  const lines = [
    `# Patch benchmark: ${o.test.name}, ${Math.max(...sums.map((s) => s.n))} images`,
    '',
    `Robust accuracy under adaptive patch attacks (per-image: PGD ${o.steps ?? 50} steps x ${o.restarts ?? 2} restarts, location search over ${o.candidates ?? 8} places, EOT ${o.eot ?? 2}; ` +
      `universal: ${o.universalSteps ?? 100} steps x batch ${o.universalBatch ?? 16} on training images). IoU: found square vs true box under the per-image attack.`,
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...defs.map((d) => {
      const cells = [d, pct(get('clean', d, 0)?.accuracy), ...attacks.flatMap((a) => sizes.map((s) => pct(get(a, d, s)?.accuracy)))];
      cells.push(...sizes.map((s) => { const v = get('perimage', d, s)?.iou; return v === null || v === undefined ? '-' : v.toFixed(3); }));
      cells.push(pct(get('clean', d, 0)?.detectionRate));
      return `| ${cells.join(' | ')} |`;
    }),
    '',
  ];
  return lines.join('\n');
}

const COLORS = ['#555555', '#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

function svg(sums: Summary[], sizes: number[]): string {
  const defs = [...new Set(sums.map((s) => s.defence))];
  const R = legendWidth(defs, 32, 130), P = 454; // legend column, plot width
  const H = 360, L = 56, T = 40, B = 50, W = L + P + R; // prettier-ignore
  const gw = P / Math.max(1, sizes.length);
  const bw = (gw * 0.8) / Math.max(1, defs.length);
  const py = (a: number) => T + (1 - a) * (H - T - B);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="22" font-size="14">Robust accuracy under the adaptive per-image patch attack</text>`,
  ];
  for (let a = 0; a <= 1.0001; a += 0.2) out.push(`<line x1="${L}" y1="${py(a)}" x2="${W - R}" y2="${py(a)}" stroke="#ddd"/><text x="${L - 6}" y="${py(a) + 4}" text-anchor="end">${a.toFixed(1)}</text>`);
  sizes.forEach((s, i) => {
    out.push(`<text x="${L + gw * (i + 0.5)}" y="${H - B + 18}" text-anchor="middle">${s}x${s}</text>`);
    defs.forEach((d, k) => {
      const v = sums.find((x) => x.attack === 'perimage' && x.defence === d && x.size === s)?.accuracy;
      if (v === undefined) return;
      const x = L + gw * i + gw * 0.1 + k * bw;
      out.push(`<rect x="${x.toFixed(1)}" y="${py(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(py(0) - py(v)).toFixed(1)}" fill="${COLORS[k % COLORS.length]}"/>`);
    });
  });
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">patch size</text>`);
  defs.forEach((d, k) => out.push(`<rect x="${W - R + 14}" y="${T + k * 20}" width="12" height="12" fill="${COLORS[k % COLORS.length]}"/><text x="${W - R + 32}" y="${T + k * 20 + 11}">${d}</text>`));
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Rows of [input, mask, inpainted, auto] tiles for the saved adversarial examples, scaled 4x, as a PNG. */
async function grid(o: PatchBenchOptions, size: number): Promise<Buffer | undefined> {
  const tiles: Float32Array[][] = [];
  const diff = new Purifier(o.model, { mode: 'diffpure', ...o.diffpure });
  for (const attack of ['perimage', 'universal']) {
    const path = join(o.outDir, `adv-${attack}-patch-s${size}-0.json`);
    if (!existsSync(path)) continue;
    const saved = JSON.parse(readFileSync(path, 'utf8')) as { idx: number[]; x: number[] };
    const k = Math.min(saved.idx.length, o.gridExamples ?? 4);
    const x = tf.tensor4d(saved.x.slice(0, k * 784), [k, 28, 28, 1]);
    const p = purifyPatch(o.model, x, { ...o.patch, seed: 1 });
    const a = purifyAuto(o.model, x, (y) => diff.purify(y, { seed: 1 }), { ...o.patch, seed: 1 });
    const cols = [x, p.mask, p.x, a.x].map((t: Tensor4D) => t.dataSync() as Float32Array);
    for (let i = 0; i < k; i++) tiles.push(cols.map((c) => c.subarray(i * 784, (i + 1) * 784)));
    tf.dispose([x, p.x, p.mask, a.x, a.mask]);
  }
  if (tiles.length === 0) return undefined;
  const S = 4, G = 4, tile = 28 * S; // scale, gap
  const [rows, cols] = [tiles.length, tiles[0].length];
  const [w, h] = [cols * (tile + G) + G, rows * (tile + G) + G];
  const px = Buffer.alloc(w * h, 255);
  tiles.forEach((row, r) => row.forEach((img, c) => {
    for (let y = 0; y < tile; y++) for (let x = 0; x < tile; x++) px[(G + r * (tile + G) + y) * w + G + c * (tile + G) + x] = Math.round(255 * img[Math.floor(y / S) * 28 + Math.floor(x / S)]);
  }));
  return sharp(px, { raw: { width: w, height: h, channels: 1 } }).png().toBuffer();
}

export async function writeReport(o: PatchBenchOptions, results: { attack: string; defence: string; size: number; rows: BenchRow[] }[], cleanser: CleanserSummary[] = []): Promise<{ markdown: string; files: string[] }> {
  const sizes = o.sizes ?? [4, 6, 8];
  const sums = results.map(summarise);
  const md = markdown(sums, sizes, o) + cleanserMarkdown(cleanser);
  // the plot shows the certified accuracy as a bar of its own: a lower bound on robust accuracy under any attack
  const certifiedBars: Summary[] = cleanser.map((c) => ({ attack: 'perimage', defence: `patchcleanser${c.classifier === 'classifier' ? '' : ` ${c.classifier}`} (certified)`, size: c.size, n: c.n, accuracy: c.certifiedAccuracy, iou: null, detectionRate: null, secondsPerImage: c.secondsPerImage }));
  const files = ['patch-bench.json', 'patch-bench.md', 'patch-bench.svg'].map((f) => join(o.outDir, f));
  writeFileSync(files[0], JSON.stringify({ dataset: o.test.name, options: { ...o, test: undefined, train: undefined, model: undefined, classifier: undefined }, summaries: sums, patchcleanser: cleanser }, null, 2) + '\n');
  writeFileSync(files[1], md);
  writeFileSync(files[2], svg([...sums, ...certifiedBars], sizes));
  const png = await grid(o, sizes.includes(6) ? 6 : sizes[0]);
  if (png) {
    files.push(join(o.outDir, 'patch-grid.png'));
    writeFileSync(files[3], png);
  }
  return { markdown: md, files };
}
