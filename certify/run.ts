/**
 * The harness behind `advpurify certify` (locuslab/smoothing `certify.py` + `analyze.py`): for every base
 * and sigma, CERTIFY each chosen test image, append one row per image to a TSV log (resuming a run skips
 * the indices already logged), then write the certified-accuracy table (Markdown + JSON) and an SVG curve.
 *
 * Each image's noise seed is a hash of (run seed, base, sigma, index), so a row does not depend on the order
 * of images, on resumption, or on how the images are spread over worker threads (`workers`: each thread
 * builds its own base from a BaseSpec and certifies the images it is handed; this thread appends the rows).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/backend/index.js';
import { type Dataset, imageSize } from '../src/data/index.js';
import { cryptoSeed } from '../src/util/rng.js';
import { runInWorkers } from '../src/util/threads.js';
import { type BaseClassifier, Smooth } from './core.js';
import { type BaseSpec, baseModels, isBaseSpec, loadBase } from './load.js';
import { modelsDir } from '../src/models/paths.js';
import { weightsFingerprint } from '../src/models/weights.js';
import { bindLogSettings } from '../src/util/tsv-log.js';

export { LogSettingsMismatchError, settingsPath } from '../src/util/tsv-log.js';
import { type CertifyReport, DEFAULT_RADII, type LogRow, buildCurves, renderMarkdown, renderSvg } from './report.js';

export * from './report.js';

/** Builds the base classifier for one noise level (a noisy-trained classifier or a denoiser depends on sigma). */
export type BaseFactory = (sigma: number) => BaseClassifier | Promise<BaseClassifier>;

export interface CertifyProgress {
  base: string;
  sigma: number;
  /** images of this (base, sigma) in the log so far, resumed ones included */
  done: number;
  total: number;
  row: LogRow;
}

export interface CertifyImagesOptions {
  dataset: Dataset;
  /** dataset indices to certify (rows already in the log are skipped) */
  indices: readonly number[];
  baseName: string;
  base: BaseClassifier;
  sigma: number;
  n0: number;
  n: number;
  alpha: number;
  batchSize?: number;
  /** run seed; each image's seed is derived from it (see imageSeed) */
  seed: number;
  /** TSV log, created with a header if missing, appended to otherwise (only under the same settings) */
  log: string;
  /** the log's settings record (default: these options' dataset, base name, sigma, n0, n, alpha, seed) */
  settings?: LogSettings;
  onProgress?: (p: CertifyProgress) => void;
}

export interface CertifyRunOptions {
  dataset: Dataset;
  sigmas: number[];
  /**
   * base name (used in file names and tables) -> a built-in base on shipped models, e.g.
   * { dds: { kind: 'dds', dataset: 'mnist' } }, or a factory (this thread only)
   */
  bases: Record<string, BaseSpec | BaseFactory>;
  n0: number;
  n: number;
  alpha: number;
  /** certify images 0, skip, 2 skip, ... (count of them; default all); or give `indices` */
  count?: number;
  skip?: number;
  indices?: readonly number[];
  batchSize?: number;
  /** run seed (default from the OS CSPRNG; recorded in the report and per row) */
  seed?: number;
  /** directory for the logs and the report files */
  outDir: string;
  radii?: number[];
  /**
   * worker threads certifying images in parallel, each with its own tfjs instance and models (bases must
   * be BaseSpecs); <= 1 (default) certifies in this thread. Rows are the same either way.
   */
  workers?: number;
  onProgress?: (p: CertifyProgress) => void;
}

export interface CertifyRunResult {
  report: CertifyReport;
  files: { logs: string[]; markdown: string; json: string; svg: string };
}

const HEADER = 'index\tlabel\tprediction\tradius\tcorrect\tseconds\tpA\tseed';

/** Indices 0, skip, 2 skip, ... below datasetCount, at most `count` of them (`indices` wins when given). */
export function planIndices(datasetCount: number, opts: { count?: number; skip?: number; indices?: readonly number[] }): number[] {
  if (opts.indices) return [...opts.indices];
  const skip = opts.skip ?? 1;
  const count = opts.count ?? Infinity;
  if (!Number.isInteger(skip) || skip < 1) throw new RangeError(`skip must be a positive integer, got ${skip}`);
  const out: number[] = [];
  for (let i = 0; i < datasetCount && out.length < count; i += skip) out.push(i);
  return out;
}

/** 32-bit FNV-1a of (run seed, base, sigma, index): the noise seed of one image. */
export function imageSeed(seed: number, base: string, sigma: number, index: number): number {
  let h = 0x811c9dc5;
  for (const ch of `${seed}|${base}|${sigma}|${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h & 0x7fffffff;
}

export function logPath(outDir: string, base: string, sigma: number): string {
  return join(outDir, `${base}-sigma${sigma}.tsv`);
}

export function formatRow(r: LogRow): string {
  return [r.index, r.label, r.prediction, r.radius.toFixed(6), r.correct ? 1 : 0, r.seconds.toFixed(3), r.pA.toFixed(6), r.seed].join('\t');
}

function parseRow(line: string): LogRow | undefined {
  const f = line.split('\t');
  if (f.length !== 8) return undefined;
  const v = f.map(Number);
  if (v.some((x) => !Number.isFinite(x))) return undefined;
  return { index: v[0], label: v[1], prediction: v[2], radius: v[3], correct: v[4] === 1, seconds: v[5], pA: v[6], seed: v[7] };
}

/**
 * Rows of a log (empty if it does not exist); an unfinished last line (a run killed mid-write) is ignored, and
 * so is a second row for an index already logged (two runs sharing a log, e.g. one per machine: an image's
 * noise seed depends only on its index, so both rows certify the same thing, and it must count once).
 */
export function readLog(path: string): LogRow[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, 'utf8').split('\n');
  if (lines.length === 1 && lines[0] === '') return [];
  if (lines[0] !== HEADER) throw new Error(`${path}: not a certify log (header "${lines[0]}")`);
  // the piece after the last newline is '' or an unfinished row
  const rows = new Map<number, LogRow>();
  for (const line of lines.slice(1, -1)) {
    const r = parseRow(line);
    if (r && !rows.has(r.index)) rows.set(r.index, r);
  }
  return [...rows.values()];
}

/**
 * What a log's rows depend on, kept beside it in `<log>.settings.json`: CERTIFY's n0, n, alpha, the run
 * seed, sigma, and the base (for a built-in base, content hashes of the weights it uses). A log is only
 * continued under the same settings, so rows certified with other weights (a retrained model, a noisy
 * base that fell back to the ordinary classifier) or another n / alpha never mix into one table.
 */
export interface LogSettings {
  format: 'advpurify-certify-log/1';
  dataset: string;
  base: string;
  sigma: number;
  n0: number;
  n: number;
  alpha: number;
  seed: number;
  /** weights file -> content hash, for built-in bases; absent for user functions */
  models?: Record<string, string>;
}

/** The settings record of one (base, sigma) log; `spec` (a built-in base) adds its weights' hashes. */
export function logSettings(o: { dataset: string; base: string; sigma: number; n0: number; n: number; alpha: number; seed: number }, spec?: BaseSpec): LogSettings {
  const r: LogSettings = { format: 'advpurify-certify-log/1', dataset: o.dataset, base: o.base, sigma: o.sigma, n0: o.n0, n: o.n, alpha: o.alpha, seed: o.seed };
  if (spec) {
    const m = baseModels(spec, o.sigma);
    const dir = join(modelsDir(), spec.dataset);
    r.models = { [m.classifier]: weightsFingerprint(join(dir, m.classifier)), ...(m.diffusion ? { diffusion: weightsFingerprint(join(dir, 'diffusion')) } : {}) };
  }
  return r;
}

/** Make `path` a log holding exactly its complete rows (header created, a partial last line cut), made under `settings`. */
function openLog(path: string, settings: LogSettings): LogRow[] {
  const rows = readLog(path);
  bindLogSettings(path, settings as unknown as Record<string, unknown>, rows.length);
  if (!existsSync(path) || !readFileSync(path, 'utf8').endsWith('\n')) {
    writeFileSync(path, [HEADER, ...rows.map(formatRow)].join('\n') + '\n');
  }
  return rows;
}

/**
 * The run seed: the given one, else the one an earlier run in `outDir` recorded (a resumed run keeps
 * drawing from the same stream), else a fresh one from the OS CSPRNG. Recorded in `outDir/seed.json`.
 */
function runSeed(outDir: string, given?: number): number {
  const path = join(outDir, 'seed.json');
  const recorded = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { seed?: unknown }).seed : undefined;
  const seed = given ?? (typeof recorded === 'number' && Number.isInteger(recorded) ? recorded : cryptoSeed());
  if (seed !== recorded) writeFileSync(path, `${JSON.stringify({ seed })}\n`);
  return seed;
}

/** CERTIFY settings shared by every image of a run. */
export interface CertifySettings {
  n0: number;
  n: number;
  alpha: number;
  batchSize?: number;
  /** run seed; each image's seed is derived from it (see imageSeed) */
  seed: number;
}

/** CERTIFY one image (`pixels`, [H * W * C], dataset index `index`) of one (base, sigma) into its log row. */
export async function certifyImage(
  smooth: Smooth,
  baseName: string,
  image: { index: number; label: number; pixels: Float32Array; shape: readonly [number, number, number] },
  o: CertifySettings,
): Promise<LogRow> {
  const t0 = performance.now();
  const seed = imageSeed(o.seed, baseName, smooth.sigma, image.index);
  const x = tf.tensor4d(image.pixels, [1, ...image.shape]);
  const c = await smooth.certify(x, { n0: o.n0, n: o.n, alpha: o.alpha, batchSize: o.batchSize, seed }).finally(() => x.dispose());
  const { index, label } = image;
  return { index, label, prediction: c.prediction, radius: c.radius, correct: c.prediction === label, seconds: (performance.now() - t0) / 1000, pA: c.pA, seed };
}

const pixelsOf = (ds: Dataset, index: number) => ds.images.subarray(index * imageSize(ds), (index + 1) * imageSize(ds));

function concatImages(ds: Dataset, indices: readonly number[]): Float32Array {
  const size = imageSize(ds);
  const out = new Float32Array(indices.length * size);
  indices.forEach((i, k) => out.set(pixelsOf(ds, i), k * size));
  return out;
}

function checkIndex(ds: Dataset, index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= ds.count) throw new RangeError(`index ${index} outside the dataset (0..${ds.count - 1})`);
}

/**
 * CERTIFY the images `indices` of one (base, sigma), appending a row per image to `log`; indices already
 * in the log, also those another run sharing it logs while this one works, are skipped. Returns the log's rows for `indices` (old and new), in log order.
 */
export async function certifyImages(o: CertifyImagesOptions): Promise<LogRow[]> {
  const wanted = new Set(o.indices);
  const settings = o.settings ?? logSettings({ dataset: o.dataset.name, base: o.baseName, sigma: o.sigma, n0: o.n0, n: o.n, alpha: o.alpha, seed: o.seed });
  const rows = openLog(o.log, settings).filter((r) => wanted.has(r.index));
  let done = new Set(rows.map((r) => r.index));
  const smooth = new Smooth(o.base, o.sigma, o.dataset.classNames.length);
  for (const index of o.indices) {
    if (done.has(index)) continue;
    done = catchUp(o.log, rows, wanted);
    if (done.has(index)) continue;
    checkIndex(o.dataset, index);
    const row = await certifyImage(smooth, o.baseName, { index, label: o.dataset.labels[index], pixels: pixelsOf(o.dataset, index), shape: o.dataset.shape }, o);
    appendFileSync(o.log, formatRow(row) + '\n');
    rows.push(row);
    done.add(index);
    o.onProgress?.({ base: o.baseName, sigma: o.sigma, done: rows.length, total: o.indices.length, row });
  }
  return loggedRows(o.log, wanted); // once each, also where another run certified an image at the same time
}

/**
 * Another run sharing `log` (a second process or machine) may have certified images since this one read it:
 * add their rows among `wanted` to `rows`, and return the indices logged so far.
 */
function catchUp(log: string, rows: LogRow[], wanted: ReadonlySet<number>): Set<number> {
  const done = new Set(rows.map((r) => r.index));
  for (const r of readLog(log)) {
    if (wanted.has(r.index) && !done.has(r.index)) {
      rows.push(r);
      done.add(r.index);
    }
  }
  return done;
}

const loggedRows = (log: string, wanted: ReadonlySet<number>): LogRow[] => readLog(log).filter((r) => wanted.has(r.index));

/** What each certify worker thread (worker.ts) is started with. Plain data only. */
export interface WorkerSetup extends CertifySettings {
  bases: Record<string, BaseSpec>;
  numClasses: number;
  shape: [number, number, number];
  /** the images the run may hand out: dataset indices, their labels and pixels (in the same order) */
  indices: number[];
  labels: Int32Array;
  images: Float32Array;
}

/** One image of one (base, sigma), handed to a worker. */
export interface ImageTask {
  base: string;
  sigma: number;
  index: number;
}

/** `advpurify certify`: certify every (base, sigma), then write certify.md, certify.json and certify.svg in outDir. */
export async function runCertify(o: CertifyRunOptions): Promise<CertifyRunResult> {
  if (o.sigmas.length === 0 || Object.keys(o.bases).length === 0) throw new Error('need at least one sigma and one base');
  for (const name of Object.keys(o.bases)) if (!/^[\w.-]+$/.test(name)) throw new Error(`base name "${name}" must be a plain file-name word`);
  const workers = Math.floor(o.workers ?? 1);
  if (workers > 1) {
    for (const [name, b] of Object.entries(o.bases)) if (!isBaseSpec(b)) throw new Error(`base "${name}" is a function; worker threads need a BaseSpec ({ kind, dataset }), or use workers: 1`);
  }
  // missing weights fail here, before any image is certified
  for (const b of Object.values(o.bases)) if (isBaseSpec(b)) for (const sigma of o.sigmas) baseModels(b, sigma);
  mkdirSync(o.outDir, { recursive: true });
  const seed = runSeed(o.outDir, o.seed);
  const indices = planIndices(o.dataset.count, o);
  indices.forEach((i) => checkIndex(o.dataset, i));
  const radii = o.radii ?? DEFAULT_RADII;
  const settings: CertifySettings = { n0: o.n0, n: o.n, alpha: o.alpha, batchSize: o.batchSize, seed };
  const wanted = new Set(indices);
  const groups = Object.keys(o.bases).flatMap((base) =>
    o.sigmas.map((sigma) => {
      const log = logPath(o.outDir, base, sigma);
      const b = o.bases[base];
      const logged = logSettings({ dataset: o.dataset.name, base, sigma, n0: o.n0, n: o.n, alpha: o.alpha, seed }, isBaseSpec(b) ? b : undefined);
      return { base, sigma, log, logged, rows: openLog(log, logged).filter((r) => wanted.has(r.index)) };
    }),
  );
  const todo = groups.map((g) => {
    const done = new Set(g.rows.map((r) => r.index));
    return indices.filter((i) => !done.has(i));
  });

  if (workers > 1) {
    const tasks: ImageTask[] = groups.flatMap((g, k) => todo[k].map((index) => ({ base: g.base, sigma: g.sigma, index })));
    const setup: WorkerSetup = {
      ...settings,
      bases: o.bases as Record<string, BaseSpec>,
      numClasses: o.dataset.classNames.length,
      shape: o.dataset.shape,
      indices,
      labels: Int32Array.from(indices, (i) => o.dataset.labels[i]),
      images: concatImages(o.dataset, indices),
    };
    const groupOf = (t: ImageTask) => groups.find((g) => g.base === t.base && g.sigma === t.sigma)!;
    await runInWorkers<ImageTask, LogRow>(new URL('./worker', import.meta.url), setup, tasks, workers, (t, row) => {
      const g = groupOf(t);
      appendFileSync(g.log, formatRow(row) + '\n');
      g.rows.push(row);
      o.onProgress?.({ base: g.base, sigma: g.sigma, done: g.rows.length, total: indices.length, row });
    }, (t) => `${t.base} sigma=${t.sigma} image ${t.index}`, (t) => {
      const g = groupOf(t);
      return catchUp(g.log, g.rows, wanted).has(t.index);
    });
    for (const g of groups) g.rows = loggedRows(g.log, wanted);
  } else {
    for (const [k, g] of groups.entries()) {
      if (todo[k].length === 0) continue;
      const b = o.bases[g.base];
      const base = isBaseSpec(b) ? await loadBase(b, g.sigma) : await b(g.sigma);
      g.rows = await certifyImages({ ...settings, dataset: o.dataset, indices, baseName: g.base, base, sigma: g.sigma, log: g.log, settings: g.logged, onProgress: o.onProgress });
    }
  }
  const logs = groups.map((g) => g.log);
  const report: CertifyReport = { dataset: o.dataset.name, n0: o.n0, n: o.n, alpha: o.alpha, seed, radii, curves: buildCurves(groups, radii, o.n, o.alpha), logs };
  const files = { logs, markdown: join(o.outDir, 'certify.md'), json: join(o.outDir, 'certify.json'), svg: join(o.outDir, 'certify.svg') };
  writeFileSync(files.markdown, renderMarkdown(report));
  writeFileSync(files.json, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(files.svg, renderSvg(groups, `Certified accuracy, ${o.dataset.name} (n=${o.n}, alpha=${o.alpha})`));
  return { report, files };
}
