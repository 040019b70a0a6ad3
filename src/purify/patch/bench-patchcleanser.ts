/**
 * The certified baseline of `bench patch`: PatchCleanser double masking (patchcleanser.ts) with the
 * undefended classifier, per patch size: clean accuracy of double-masking inference and certified robust
 * accuracy (a lower bound on its accuracy under any attack with one patch of that size, exact). One
 * resumable TSV log per size, tied to its settings like the attack logs.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { batch } from '../../data/index.js';
import { tf } from '../../backend/index.js';
import { bindLogSettings, openTsvLog } from '../../util/tsv-log.js';
import type { LogitsFn } from '../../types.js';
import type { PatchBenchOptions } from './bench.js';
import { maskSet, patchCleanser } from './patchcleanser.js';

export interface CleanserSummary {
  /** the classifier under double masking: 'classifier' (the undefended one) or a named variant */
  classifier: string;
  size: number;
  perAxis: number;
  masks: number;
  /** classifier evaluations per image */
  evaluations: number;
  n: number;
  cleanAccuracy: number;
  certifiedAccuracy: number;
  secondsPerImage: number;
}

interface CleanserRow {
  index: number;
  label: number;
  prediction: number;
  correct: boolean;
  certified: boolean;
  seconds: number;
}

const HEADER = 'index\tlabel\tprediction\tcorrect\tcertified\tseconds';

/** Run (or resume) PatchCleanser with one classifier on the first `count` test images for one patch size. */
export function runCleanser(o: PatchBenchOptions, name: string, v: { classifier: LogitsFn; weights?: string }, size: number, count: number, chunk: number, progress?: (done: number) => void): CleanserSummary {
  const perAxis = (o.patchcleanser || {}).perAxis ?? 6;
  const [h, w] = o.test.shape;
  const log = join(o.outDir, `patchcleanser${name === 'classifier' ? '' : `-${name}`}-s${size}.tsv`);
  const lines = openTsvLog(log, HEADER);
  bindLogSettings(log, { format: 'advpurify-patchcleanser-log/1', test: o.test.name, size, perAxis, fill: 0, models: { [name]: v.weights ?? 'unrecorded' } }, lines.length);
  const rows: CleanserRow[] = lines.map((l) => l.map(Number)).filter((v) => v.length === 6 && v.every(Number.isFinite))
    .map((v) => ({ index: v[0], label: v[1], prediction: v[2], correct: v[3] === 1, certified: v[4] === 1, seconds: v[5] }))
    .filter((r) => r.index < count);
  const have = new Set(rows.map((r) => r.index));
  for (let s = 0; s < count; s += chunk) {
    const idx = Array.from({ length: Math.min(chunk, count - s) }, (_, i) => s + i).filter((i) => !have.has(i));
    if (idx.length > 0) {
      const t0 = performance.now();
      const { x, y } = batch(o.test, idx);
      const labels = y.dataSync();
      const r = patchCleanser(v.classifier, x, labels, { patch: size, perAxis });
      tf.dispose([x, y]);
      const seconds = (performance.now() - t0) / 1000 / idx.length;
      const fresh = idx.map((index, i) => ({ index, label: labels[i], prediction: r.prediction[i], correct: r.prediction[i] === labels[i], certified: r.certified[i], seconds }));
      appendFileSync(log, fresh.map((f) => [f.index, f.label, f.prediction, f.correct ? 1 : 0, f.certified ? 1 : 0, f.seconds.toFixed(3)].join('\t')).join('\n') + '\n');
      rows.push(...fresh);
    }
    progress?.(Math.min(s + chunk, count));
  }
  const masks = maskSet(h, w, { patch: size, perAxis }).length;
  const n = Math.max(1, rows.length);
  return {
    classifier: name, size, perAxis, masks, evaluations: (masks * (masks + 1)) / 2, n: rows.length,
    cleanAccuracy: rows.filter((r) => r.correct).length / n,
    certifiedAccuracy: rows.filter((r) => r.certified).length / n,
    secondsPerImage: rows.reduce((a, r) => a + r.seconds, 0) / n,
  };
}

/** The Markdown section for the report. */
export function cleanserMarkdown(sums: CleanserSummary[]): string {
  if (sums.length === 0) return '';
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  return [
    '',
    `## Certified baseline: PatchCleanser (double masking, up to ${sums[0].perAxis} masks per axis, masked pixels 0)`,
    '',
    'Certified accuracy is exact and holds against any attack with one patch of that size anywhere (a lower bound on robust accuracy); clean accuracy is double-masking inference on the clean images.',
    '',
    '| classifier | patch | masks | evaluations / image | images | clean acc | certified robust acc | s / image |',
    '|---|---|---|---|---|---|---|---|',
    ...sums.map((s) => `| ${s.classifier} | ${s.size}x${s.size} | ${s.masks} | ${s.evaluations} | ${s.n} | ${pct(s.cleanAccuracy)} | ${pct(s.certifiedAccuracy)} | ${s.secondsPerImage.toFixed(2)} |`),
    '',
  ].join('\n');
}
