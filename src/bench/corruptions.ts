/**
 * `advpurify bench corruptions`: a Fashion-MNIST-C-style suite built from src/degradations. Every
 * degradation that fits the images' channels at severities 1..5, random mixtures of 2 and 3 of them
 * (`mix-2`, `mix-3`: each step at the row's severity) and the clean images (severity 0: "does it leave
 * what is fine alone?"), on the first `count` images of a split. For each preprocessor in front of the
 * shipped classifier: accuracy, agreement with the classifier's prediction on the clean image, and
 * PSNR / SSIM of its output to the clean image.
 *
 * Preprocessors: raw (none), diffpure, oneshot (the shipped diffusion model, default options),
 * restore (the default design, cold diffusion) and restore-x0 (x0 then diffpure) with the restoration model, and
 * the baselines of attacks/defenses.ts: jpeg (q 75), bitdepth (3 bits), median (3x3).
 *
 * Seeds: every draw (degradation, preprocessor randomness) comes from an FNV hash of the run seed and the
 * cell, made odd; the restoration trainer's degradation seeds are even, so no benchmark image is ever
 * degraded the way a training image was. Resumable: one TSV of per-chunk sums, appended after every
 * chunk; a rerun skips the chunks it holds and rewrites the report from the log.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { LogSettingsMismatchError, openTsvLog, settingsDiff, settingsPath } from '../util/tsv-log.js';
import { modelsDir } from '../models/paths.js';
import { restoreWeightsPath } from '../models/restore-model.js';
import { weightsFingerprint } from '../models/weights.js';
import { join } from 'node:path';
import { tf, type Tensor4D } from '../backend/index.js';
import { imageSize, loadDataset, loadFixture, take, type Dataset, type DatasetName } from '../data/index.js';
import { DEGRADATIONS, degradationsFor, getDegradation, randomSequence, SEVERITIES, type Severity } from '../degradations/index.js';
import type { LogitsFn } from '../types.js';
import { Progress } from '../util/progress.js';
import { yieldToEventLoop } from '../util/yield.js';
import { psnrPerImage, ssimPerImage } from './similarity.js';
import { writeCorruptionReport, type CellSummary } from './corruptions-report.js';

export const PREPROCESSORS = ['raw', 'diffpure', 'oneshot', 'restore', 'restore-x0', 'jpeg', 'bitdepth', 'median'] as const;
export type PreprocessorName = (typeof PREPROCESSORS)[number];
/** Rows besides the single degradations: random sequences of 2 and 3 degradations. */
export const MIXTURES = ['mix-2', 'mix-3'] as const;

/** Images [N,H,W,C] in [0,1] -> images in [0,1]; `seed` drives any randomness. Returns a new tensor. */
export type Preprocess = (x: Tensor4D, seed: number) => Tensor4D;

export interface CorruptionBenchOptions {
  data: Dataset;
  classifier: LogitsFn;
  /** The preprocessors to compare, by name (their order is the report's). */
  preprocessors: Partial<Record<PreprocessorName, Preprocess>>;
  outDir: string;
  count?: number; // default 1000
  /** Degradations (default: every one that fits the channels) and mixtures (default mix-2, mix-3) to run. */
  degradations?: string[];
  severities?: Severity[]; // default 1..5
  clean?: boolean; // include the clean row (default true)
  chunk?: number; // images per chunk (default 50)
  seed?: number; // default 0
  /** Notes for the report (e.g. a preprocessor that was skipped). */
  notes?: string[];
  /**
   * What the rows depend on beyond these options, recorded beside the log (corruptions.settings.json) and
   * checked on resume: `classifier` (e.g. the weights' hash) and, per preprocessor, its resolved settings
   * and weights. A preprocessor whose record changed is refused; a new one is added to the record.
   */
  provenance?: { classifier?: unknown; preprocessors?: Partial<Record<PreprocessorName, unknown>> };
}

export interface ChunkRow {
  condition: string;
  severity: number;
  preprocessor: string;
  start: number;
  n: number;
  correct: number;
  agree: number;
  psnr: number; // sum over the chunk's images
  ssim: number; // sum
  seconds: number; // total
}

const HEADER = 'condition\tseverity\tpreprocessor\tstart\tn\tcorrect\tagree\tpsnr_sum\tssim_sum\tseconds';
const key = (r: { condition: string; severity: number; preprocessor: string; start: number }) => `${r.condition}|${r.severity}|${r.preprocessor}|${r.start}`;

/** An odd 31-bit seed from the parts (FNV-1a): disjoint from the restoration trainer's even seeds. */
export function benchSeed(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join('|')) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return (h & 0x7fffffff) | 1;
}

export function readLog(path: string): ChunkRow[] {
  return openTsvLog(path, HEADER).filter((v) => v.length === 10 && v.slice(3).every((s) => Number.isFinite(Number(s))))
    .map((v) => ({ condition: v[0], severity: Number(v[1]), preprocessor: v[2], start: Number(v[3]), n: Number(v[4]), correct: Number(v[5]), agree: Number(v[6]), psnr: Number(v[7]), ssim: Number(v[8]), seconds: Number(v[9]) }));
}

const formatRow = (r: ChunkRow) => [r.condition, r.severity, r.preprocessor, r.start, r.n, r.correct, r.agree, r.psnr.toFixed(4), r.ssim.toFixed(6), r.seconds.toFixed(3)].join('\t');

/** The degraded chunk for a condition: a single degradation, a mixture, or the clean images (a copy). */
export async function degrade(x: Tensor4D, condition: string, severity: number, seed: number): Promise<Tensor4D> {
  if (condition === 'clean') return x.clone();
  if (condition.startsWith('mix-')) {
    const names = degradationsFor(x.shape[3]);
    const r = await randomSequence({ length: Number(condition.slice(4)), seed, severities: [severity as Severity], names }).apply(x);
    return r.y;
  }
  return (await getDegradation(condition).apply(x, severity as Severity, seed)).y;
}

/** Check a list of condition names (degradations or mixtures) for the images' channel count. */
export function conditionsFor(channels: number, names?: string[]): string[] {
  const all: string[] = [...degradationsFor(channels), ...MIXTURES];
  for (const n of names ?? []) {
    if (!(n in DEGRADATIONS) && !(MIXTURES as readonly string[]).includes(n)) throw new RangeError(`unknown degradation "${n}" (expected ${[...Object.keys(DEGRADATIONS), ...MIXTURES].join(', ')})`);
    if (!all.includes(n)) throw new RangeError(`degradation "${n}" needs RGB images; these have ${channels} channel(s)`);
  }
  return names ?? all;
}

/** Run (or resume) the benchmark; writes corruptions.{tsv,json,md} and two SVGs in outDir. */
export async function runCorruptionBench(o: CorruptionBenchOptions): Promise<{ markdown: string; files: string[]; cells: CellSummary[] }> {
  mkdirSync(o.outDir, { recursive: true });
  const count = Math.min(o.count ?? 1000, o.data.count);
  const conditions = conditionsFor(o.data.shape[2], o.degradations);
  const severities = o.severities ?? [...SEVERITIES];
  const chunk = o.chunk ?? 50;
  const seed = o.seed ?? 0;
  const names = (Object.keys(o.preprocessors) as PreprocessorName[]).filter((p) => o.preprocessors[p]);
  const cells: { condition: string; severity: number }[] = [
    ...(o.clean === false ? [] : [{ condition: 'clean', severity: 0 }]),
    ...conditions.flatMap((condition) => severities.map((severity) => ({ condition, severity }))),
  ];
  const logPath = join(o.outDir, 'corruptions.tsv');
  const all = readLog(logPath);
  bindSettings(logPath, all, o, chunk, seed, names);
  const rows = all.filter((r) => r.start < count && names.includes(r.preprocessor as PreprocessorName));
  const have = new Set(rows.map(key));
  const size = imageSize(o.data);
  const bar = new Progress(cells.length * count, 'bench corruptions', 10);
  let done = 0;
  for (const { condition, severity } of cells) {
    for (let start = 0; start < count; start += chunk) {
      const n = Math.min(chunk, count - start);
      const todo = names.filter((preprocessor) => !have.has(key({ condition, severity, preprocessor, start })));
      if (todo.length > 0) {
        await yieldToEventLoop(); // stay responsive between chunks (signals, progress, test runners' RPC)
        const x = tf.tensor4d(o.data.images.subarray(start * size, (start + n) * size), [n, ...o.data.shape]);
        const labels = o.data.labels.subarray(start, start + n);
        const cleanPred = tf.tidy(() => o.classifier(x).argMax(-1).dataSync());
        const y = await degrade(x, condition, severity, benchSeed(seed, 'degrade', condition, severity, start));
        const fresh: ChunkRow[] = [];
        for (const preprocessor of todo) {
          const t0 = performance.now();
          const out = o.preprocessors[preprocessor]!(y, benchSeed(seed, preprocessor, condition, severity, start));
          const pred = tf.tidy(() => o.classifier(out).argMax(-1).dataSync());
          const seconds = (performance.now() - t0) / 1000;
          const [p, s] = [psnrPerImage(out, x), ssimPerImage(out, x)];
          out.dispose();
          let correct = 0;
          let agree = 0;
          for (let i = 0; i < n; i++) {
            correct += Number(pred[i] === labels[i]);
            agree += Number(pred[i] === cleanPred[i]);
          }
          const sum = (a: Float32Array) => a.reduce((q, v) => q + v, 0);
          fresh.push({ condition, severity, preprocessor, start, n, correct, agree, psnr: sum(p), ssim: sum(s), seconds });
        }
        tf.dispose([x, y]);
        appendFileSync(logPath, fresh.map(formatRow).join('\n') + '\n');
        rows.push(...fresh);
      }
      done += n;
      bar.update(done, `${condition}${severity ? ` s${severity}` : ''}`);
    }
  }
  bar.done();
  return writeCorruptionReport(o, rows, { count, conditions, severities, preprocessors: names });
}

/**
 * The log's settings record: the common part (data, seed, chunk size, classifier) must match for any row
 * to be reused; each preprocessor's part must match for its rows. Preprocessors new to the log are added.
 */
function bindSettings(logPath: string, rows: ChunkRow[], o: CorruptionBenchOptions, chunk: number, seed: number, names: PreprocessorName[]): void {
  const sp = settingsPath(logPath);
  const common = { format: 'advpurify-corruptions-log/1', data: o.data.name, seed, chunk, classifier: o.provenance?.classifier ?? 'unrecorded' };
  const fix = 'move the log aside or write into another --out';
  const recorded = existsSync(sp) ? (JSON.parse(readFileSync(sp, 'utf8')) as typeof common & { preprocessors: Record<string, unknown> }) : undefined;
  if (!recorded && rows.length > 0) throw new LogSettingsMismatchError(`${logPath} has ${rows.length} rows but no ${sp} recording the settings they were made with; ${fix}`);
  const { preprocessors: was = {}, ...wasCommon } = recorded ?? { ...common, preprocessors: {} };
  const differ = settingsDiff(wasCommon, common);
  if (differ.length > 0) throw new LogSettingsMismatchError(`${logPath} was made with other settings (${differ.join('; ')}); ${fix}`);
  const now: Record<string, unknown> = { ...was };
  for (const name of names) {
    const mine = o.provenance?.preprocessors?.[name] ?? 'unrecorded';
    if (name in was) {
      const d = settingsDiff({ [name]: was[name] }, { [name]: mine });
      if (d.length > 0) throw new LogSettingsMismatchError(`${logPath}: preprocessor ${name} was run with other settings (${d.join('; ')}); ${fix}`);
    } else if (rows.some((r) => r.preprocessor === name)) {
      throw new LogSettingsMismatchError(`${logPath} has rows for ${name} but no record of its settings; ${fix}`);
    } else now[name] = mine;
  }
  writeFileSync(sp, JSON.stringify({ ...common, preprocessors: now }, null, 1) + '\n');
}

// ---- what the CLI and scripts/bench-corruptions.ts call -------------------------------------------

export interface CorruptionBenchArgs {
  dataset?: DatasetName; // default fashion-mnist
  /** 'test' (default), 'val' (carved from the training data: compare designs here), or 'fixture' */
  split?: string;
  count?: number;
  degradations?: string[];
  severities?: number[];
  preprocessors?: string[];
  /** diffusion weights / restoration weights (shipped name or path; default: the dataset's) */
  model?: string;
  restoreModel?: string;
  /** the 'x0' design (restore-x0): its diffpure pass (default: the purifier's restore defaults, t* 100, 5 steps) */
  restoreTStar?: number;
  restoreSteps?: number;
  /** the 'cold' design (restore): number of cold-diffusion steps (default 5) */
  coldSteps?: number;
  /** the shipped classifier variant every row is measured with (default 'classifier'; e.g. 'classifier-restore',
   *  fine-tuned on restored images) */
  classifier?: string;
  out?: string;
  chunk?: number;
  seed?: number;
}

export async function benchCorruptions(a: CorruptionBenchArgs): Promise<{ markdown: string; files: string[]; cells: CellSummary[] }> {
  const { createPurifier, loadClassifier, modelPath } = await import('../purify/index.js');
  const { jpegDefense, bitDepth, medianFilter } = await import('../../attacks/defenses.js');
  const dataset = a.dataset ?? 'fashion-mnist';
  const split = a.split ?? 'test';
  if (!['test', 'val', 'fixture'].includes(split)) throw new RangeError(`--split must be test, val or fixture, got "${split}"`);
  const data = split === 'fixture' ? loadFixture() : loadDataset(dataset, split as 'test' | 'val');
  for (const s of a.severities ?? []) if (!SEVERITIES.includes(s as Severity)) throw new RangeError(`severities must be 1..5, got ${s}`);
  const wanted = a.preprocessors ?? [...PREPROCESSORS];
  for (const p of wanted) if (!(PREPROCESSORS as readonly string[]).includes(p)) throw new RangeError(`unknown preprocessor "${p}" (expected ${PREPROCESSORS.join(', ')})`);
  const variant = a.classifier ?? 'classifier';
  const clf = await loadClassifier(dataset, variant);
  const model = a.model ?? dataset;
  const restoreModel = a.restoreModel ?? model;
  const notes: string[] = [];
  const provenance: { classifier: string; preprocessors: Partial<Record<PreprocessorName, unknown>> } = {
    classifier: weightsFingerprint(join(modelsDir(), dataset, variant)),
    preprocessors: { raw: {}, jpeg: { quality: 75 }, bitdepth: { bits: 3 }, median: { size: 3 } },
  };
  const purifier = async (o: Parameters<typeof createPurifier>[0], as: PreprocessorName): Promise<Preprocess | undefined> => {
    try {
      const p = await createPurifier({ ...o, validate: false });
      const weights = o?.mode === 'restore' ? restoreWeightsPath(modelPath(o.model ?? dataset)) : modelPath(o?.model ?? dataset);
      const { tStar, steps, sampler, sigma, restorer, draws } = p.options;
      provenance.preprocessors[as] = { mode: p.options.mode, tStar, steps, sampler, sigma: sigma ?? null, ...(o?.mode === 'restore' ? { restorer } : {}), draws, weights: weightsFingerprint(weights) };
      return (x, seed) => p.purify(x, { seed });
    } catch (e) {
      // a restoration model that is not trained yet: skip it unless it was asked for by name
      if (o?.mode !== 'restore' || a.preprocessors) throw e;
      notes.push(`restore, restore-x0: skipped (${e instanceof Error ? e.message : String(e)})`);
      process.stderr.write(`bench corruptions: ${notes[notes.length - 1]}\n`);
      return undefined;
    }
  };
  // the row named 'restore' is what `mode: 'restore'` does by default (the cold design); restore-x0 the other design
  const design = (restorer: 'cold' | 'x0') => (restorer === 'cold' ? { restorer, steps: a.coldSteps } : { restorer, tStar: a.restoreTStar, steps: a.restoreSteps });
  const restore = wanted.some((p) => p.startsWith('restore')) ? await purifier({ model: restoreModel, mode: 'restore', ...design('cold') }, 'restore') : undefined;
  const make: Record<PreprocessorName, () => Promise<Preprocess | undefined>> = {
    raw: async () => (x) => x.clone(),
    diffpure: () => purifier({ model, mode: 'diffpure' }, 'diffpure'),
    oneshot: () => purifier({ model, mode: 'oneshot' }, 'oneshot'),
    restore: async () => restore,
    'restore-x0': async () => (restore ? purifier({ model: restoreModel, mode: 'restore', ...design('x0') }, 'restore-x0') : undefined),
    jpeg: async () => jpegDefense(75).forward,
    bitdepth: async () => bitDepth(3).forward,
    median: async () => medianFilter.forward,
  };
  const preprocessors: Partial<Record<PreprocessorName, Preprocess>> = {};
  for (const p of wanted as PreprocessorName[]) {
    const f = await make[p]();
    if (f) preprocessors[p] = f;
  }
  return runCorruptionBench({
    data: a.count ? take(data, a.count) : data, classifier: (x) => clf.predict(x), preprocessors, notes, provenance,
    outDir: a.out ?? join('runs', dataset, `bench-corruptions${split === 'test' ? '' : `-${split}`}`),
    count: a.count, degradations: a.degradations, severities: a.severities as Severity[] | undefined, chunk: a.chunk, seed: a.seed,
  });
}
