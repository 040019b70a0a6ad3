/**
 * `advpurify bench patch`: clean accuracy, and robust accuracy under adaptive per-image and universal
 * patch attacks, of the shipped classifier behind each defence (none, diffpure, patch, auto), per patch
 * size; plus localisation IoU of the found square against the true patch box.
 *
 * Threat model and attacks (attacks/patch.ts): per-image s x s patch anywhere, PGD with location search
 * and EOT over the defence's randomness; universal patch trained on training images at random places and
 * scales against the same defended model. Gradients: none = exact; diffpure = BPDA (identity) by default
 * (`gradient: 'full'` differentiates every reverse step); patch and auto = masked BPDA (exact through the
 * pixels the defence keeps, zero where it inpaints; BPDA through diffpure in auto) plus an evasion term:
 * minus the localiser's anomaly score inside the box while the localiser finds the box (attacks/patch.ts
 * evasionPenalty; exact gradient through the diffusion model).
 * An image counts as robust when one fresh draw of the defence classifies its adversarial version correctly.
 *
 * Resumable: one TSV per (attack, defence, size) with a row per image, appended after each chunk of
 * images; universal patches are cached as JSON (claimed by one run while it trains them); seeds derive from
 * (run seed, names, index).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { sleepSync, tryClaim } from '../../util/claim.js';
import { yieldToEventLoop } from '../../util/yield.js';
import { LogSettingsMismatchError, bindLogSettings, openTsvLog, settingsDiff } from '../../util/tsv-log.js';
import { modelsDir } from '../../models/paths.js';
import { weightsFingerprint } from '../../models/weights.js';
import { resolveOptions } from '../options.js';
import { join } from 'node:path';
import { tf, type Tensor4D } from '../../backend/index.js';
import { DataNotFoundError, imageSize, loadDataset, loadFixture, subset, type Dataset } from '../../data/index.js';
import type { DiffusionModel } from '../../models/diffusion-model.js';
import type { LogitsFn } from '../../types.js';
import { mulberry32 } from '../../util/rng.js';
import { Progress } from '../../util/progress.js';
import { Purifier } from '../purifier.js';
import { loadClassifier, loadDiffusionModel } from '../index.js';
import { adaptive, type Target } from '../../../attacks/index.js';
import { evasionPenalty, maskedBpda, pastePatch, patchPgd, trainUniversalPatch, type PatchPenalty } from '../../../attacks/patch.js';
import { boxIoU, randomBox, type Box } from './box.js';
import { LOCALIZE_DEFAULTS, type FoundPatch } from './localize.js';
import { INPAINT_DEFAULTS } from './inpaint.js';
import { PATCH_DEFAULTS, purifyAuto, purifyPatch, type PatchOptions } from './index.js';
import { writeReport, type BenchRow } from './bench-report.js';
import { runInWorkers } from '../../util/threads.js';
import { UsageError, indexList, num, numList, type Flags } from '../../cli/args.js';
import { runCleanser, type CleanserSummary } from './bench-patchcleanser.js';

export const DEFENCES = ['none', 'diffpure', 'patch', 'auto'] as const;
export type DefenceName = (typeof DEFENCES)[number];
export type PatchAttackName = 'perimage' | 'universal';

export interface PatchBenchOptions {
  test: Dataset;
  train: Dataset;
  model: DiffusionModel;
  classifier: LogitsFn;
  outDir: string;
  count?: number; // default 200
  sizes?: number[]; // default [4, 6, 8]
  defences?: DefenceName[];
  attacks?: PatchAttackName[];
  steps?: number; // per-image PGD steps (default 50)
  candidates?: number; // location search (default 8)
  restarts?: number; // per-image restarts, each at a newly searched place (default 2)
  eot?: number; // draws per gradient for randomized defences (default 2)
  gradient?: 'full' | 'bpda'; // through diffpure (default 'bpda')
  universalSteps?: number; // default 100
  universalBatch?: number; // default 16
  /** how often a run waiting for another run's universal patch looks for it (ms, default 10,000) */
  claimPollMs?: number;
  chunk?: number; // images per chunk (default 10)
  diffpure?: { tStar?: number; steps?: number };
  patch?: PatchOptions;
  seed?: number; // default 0
  gridExamples?: number; // default 4
  /**
   * The certified baseline, PatchCleanser double masking, per size: with `classifier` (the undefended one)
   * and any further `classifiers` (e.g. one trained with mask augmentation; name -> logits and weights
   * hash); false: skip it.
   */
  patchcleanser?: { perAxis?: number; classifiers?: Record<string, { classifier: LogitsFn; weights?: string }> } | false;
  /** Content hashes of the weights behind `classifier` and `model` (recorded with every log; see weightsFingerprint). */
  models?: { classifier?: string; diffusion?: string };
  /**
   * The test images to attack, in this order (default 0 .. count-1). Runs sharing `outDir` (other processes
   * or machines) skip the images another has logged, checked before each chunk, so two runs may take the same
   * images from opposite ends (e.g. 0-199 and 199-0).
   */
  indices?: number[];
  /** Worker threads for the attacks (default 1: this thread); each loads the data and models from `workerArgs`. */
  workers?: number;
  /** What each worker thread loads its data and models from (benchPatch passes its own arguments). */
  workerArgs?: PatchBenchArgs;
}

/**
 * What the rows of one (attack, defence, size) log depend on, defaults resolved: the attack's budget, the
 * defence's settings and the weights it runs on. Only what that log uses, so e.g. a new diffusion model
 * leaves the undefended logs valid. Recorded beside each log and with each cached universal patch.
 */
export function patchLogSettings(o: PatchBenchOptions, attack: PatchAttackName | 'clean', name: DefenceName, size: number): Record<string, unknown> {
  const usesDiffusion = name !== 'none';
  const r: Record<string, unknown> = {
    format: 'advpurify-patch-log/1', test: o.test.name, attack, defence: name, size, seed: o.seed ?? 0,
    models: { classifier: o.models?.classifier ?? 'unrecorded', ...(usesDiffusion ? { diffusion: o.models?.diffusion ?? 'unrecorded' } : {}) },
  };
  if (name === 'diffpure' || name === 'auto') {
    const d = resolveOptions({ mode: 'diffpure', ...o.diffpure });
    r.diffpure = { tStar: d.tStar, steps: d.steps, sampler: d.sampler };
  }
  if (name === 'patch' || name === 'auto') {
    r.patch = {
      margin: o.patch?.margin ?? PATCH_DEFAULTS.margin,
      localize: { ...LOCALIZE_DEFAULTS, ...o.patch?.localize },
      inpaint: { ...INPAINT_DEFAULTS, ...o.patch?.inpaint },
    };
  }
  if (attack !== 'clean' && name !== 'none') r.attackGradient = { eot: o.eot ?? 2, ...(name === 'diffpure' ? { gradient: o.gradient ?? 'bpda' } : {}) };
  if (attack === 'perimage') r.perimage = { steps: o.steps ?? 50, candidates: o.candidates ?? 8, restarts: o.restarts ?? 2 };
  if (attack === 'universal') r.universal = { train: o.train.name, steps: o.universalSteps ?? 100, batch: o.universalBatch ?? 16 };
  return r;
}

interface Defence {
  forward(x: Tensor4D, seed: number): { x: Tensor4D; mask?: Tensor4D; found?: FoundPatch[] };
  target(seed: number): Target;
  /** the evasion term for one chunk (or one universal patch's training), its noise seeded from `seed` */
  penalty?: (seed: number) => PatchPenalty;
}

function hashSeed(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join('|')) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h & 0x7fffffff;
}

function defences(o: PatchBenchOptions): Record<DefenceName, Defence> {
  const { model, classifier } = o;
  const diff = new Purifier(model, { mode: 'diffpure', ...o.diffpure });
  const eot = o.eot ?? 2;
  const popts = (seed: number): PatchOptions => ({ ...o.patch, seed });
  const patch = (x: Tensor4D, seed: number) => purifyPatch(model, x, popts(seed));
  const auto = (x: Tensor4D, seed: number) => purifyAuto(model, x, (y) => diff.purify(y, { seed }), popts(seed));
  // evade the localiser: lower the anomaly score inside the box while the localiser finds it (seeded per
  // chunk, so that a chunk's rows do not depend on which thread ran the chunks before it)
  const penalty = (seed: number) => evasionPenalty(model, o.patch?.localize, hashSeed(seed, 'evasion'));
  return {
    none: { forward: (x) => ({ x: x.clone() }), target: () => classifier },
    diffpure: {
      forward: (x, seed) => ({ x: diff.purify(x, { seed }) }),
      target: (seed) => adaptive({ randomized: true, forward: (x, s) => diff.purify(x, { seed: s }) }, classifier, { eot, gradient: o.gradient ?? 'bpda', seed }),
    },
    patch: { forward: patch, target: (seed) => adaptive(maskedBpda(patch), classifier, { eot, seed }), penalty },
    auto: { forward: auto, target: (seed) => adaptive(maskedBpda(auto), classifier, { eot, seed }), penalty },
  };
}

const HEADER = 'index\tlabel\tprediction\tcorrect\tdetected\tiou\ttop\tleft\tsize\tseconds';

function parseRows(lines: string[][]): BenchRow[] {
  return lines.map((l) => l.map(Number)).filter((v) => v.length === 10 && v.every(Number.isFinite))
    .map((v) => ({ index: v[0], label: v[1], prediction: v[2], correct: v[3] === 1, detected: v[4], iou: v[5], box: { top: v[6], left: v[7], size: v[8] }, seconds: v[9] }));
}

/** Open (creating) a log and tie it to its settings; its rows, once per image (the first row logged wins). */
function readRows(path: string, settings: Record<string, unknown>): BenchRow[] {
  const lines = openTsvLog(path, HEADER);
  bindLogSettings(path, settings, lines.length);
  return firstPerImage(parseRows(lines));
}

/**
 * The complete rows of a log as they stand now, without touching the file (another run sharing the directory
 * may be appending to it: a last line without its newline is not read).
 */
function loggedRows(path: string): BenchRow[] {
  if (!existsSync(path)) return [];
  return parseRows(readFileSync(path, 'utf8').split('\n').slice(1, -1).map((l) => l.split('\t')));
}

function firstPerImage(rows: BenchRow[]): BenchRow[] {
  const seen = new Set<number>();
  return rows.filter((r) => !seen.has(r.index) && (seen.add(r.index), true));
}

function images(ds: Dataset, idx: readonly number[]): { x: Tensor4D; y: Int32Array } {
  const size = imageSize(ds);
  const buf = new Float32Array(idx.length * size);
  idx.forEach((j, i) => buf.set(ds.images.subarray(j * size, (j + 1) * size), i * size));
  return { x: tf.tensor4d(buf, [idx.length, ...ds.shape]), y: Int32Array.from(idx, (j) => ds.labels[j]) };
}

/**
 * A universal patch for (defence, size), trained against the defended model once and cached. Runs sharing
 * the directory claim a patch before training it (`universal-<defence>-s<size>.json.lock`, src/util/claim.ts),
 * so two runs train different patches instead of the same one twice. When another live run holds the claim:
 * with `wait` false, null (the caller moves on to another patch); with `wait` true, block until its patch is
 * written (or its run dies, and then train it here).
 */
function universal(o: PatchBenchOptions, name: DefenceName, def: Defence, size: number, wait: boolean): tf.Tensor3D | null {
  const path = join(o.outDir, `universal-${name}-s${size}.json`);
  const settings = patchLogSettings(o, 'universal', name, size);
  let said = false;
  for (;;) {
    if (existsSync(path)) {
      const cached = JSON.parse(readFileSync(path, 'utf8')) as { patch: number[]; settings?: Record<string, unknown> };
      const differ = settingsDiff(cached.settings ?? {}, settings);
      if (differ.length > 0) throw new LogSettingsMismatchError(`${path} was trained with other settings (${differ.join('; ')}); move it aside or write into another --out`);
      return tf.tensor3d(cached.patch, [size, size, o.train.shape[2]]);
    }
    const release = tryClaim(`${path}.lock`);
    if (release) {
      try {
        if (existsSync(path)) continue; // written between the check and the claim (the finally releases)
        process.stderr.write(`bench patch: training the universal ${size}x${size} patch against ${name}\n`);
        const seed = hashSeed(o.seed ?? 0, 'universal', name, size);
        const { patch, losses } = trainUniversalPatch(def.target(seed), o.train, {
          size, steps: o.universalSteps ?? 100, batchSize: o.universalBatch ?? 16, seed, penalty: def.penalty?.(seed),
        });
        // written whole, then renamed: a run polling for it never reads half a file
        writeFileSync(`${path}.part`, JSON.stringify({ defence: name, size, settings, losses, patch: Array.from(patch.dataSync()) }) + '\n');
        renameSync(`${path}.part`, path);
        return patch;
      } finally {
        release();
      }
    }
    if (!wait) return null;
    if (!said) process.stderr.write(`bench patch: waiting for another run to finish the universal ${size}x${size} patch against ${name} (${path}.lock)\n`);
    said = true;
    sleepSync(o.claimPollMs ?? 10_000);
  }
}

/** Attack and evaluate one chunk of images; returns its rows and (for the picture grid) the adversarial images. */
function runChunk(o: PatchBenchOptions, name: DefenceName, def: Defence, attack: PatchAttackName | 'clean', size: number, idx: number[], patch?: tf.Tensor3D): BenchRow[] {
  const t0 = performance.now();
  const { x, y } = images(o.test, idx);
  const seed = hashSeed(o.seed ?? 0, attack, name, size, idx[0]);
  let xAdv: Tensor4D;
  let boxes: (Box | undefined)[] = idx.map(() => undefined);
  if (attack === 'perimage') {
    const r = patchPgd(def.target(seed), x, y, { size, location: 'search', candidates: o.candidates ?? 8, restarts: o.restarts ?? 2, steps: o.steps ?? 50, seed, penalty: def.penalty?.(seed) });
    xAdv = r.xAdv;
    boxes = r.boxes;
  } else if (attack === 'universal') {
    const rng = mulberry32(seed);
    boxes = idx.map(() => randomBox(size, o.test.shape[0], o.test.shape[1], rng));
    const p = pastePatch(x, patch!, boxes as Box[]);
    p.mask.dispose();
    xAdv = p.x;
  } else xAdv = x.clone();
  const out = def.forward(xAdv, hashSeed(seed, 'eval'));
  const pred = tf.tidy(() => o.classifier(out.x).argMax(-1).dataSync());
  if (attack !== 'clean' && idx[0] < (o.gridExamples ?? 4)) {
    writeFileSync(join(o.outDir, `adv-${attack}-${name}-s${size}-${idx[0]}.json`), JSON.stringify({ idx, boxes, x: Array.from(xAdv.dataSync()) }));
  }
  tf.dispose([x, xAdv, out.x, out.mask]);
  const seconds = (performance.now() - t0) / 1000 / idx.length;
  return idx.map((index, i) => {
    const f = out.found?.[i];
    const b = boxes[i];
    const iou = f && b && b.size > 0 ? (f.detected ? boxIoU(f, b) : 0) : -1;
    return { index, label: y[i], prediction: pred[i], correct: pred[i] === y[i], detected: f ? Number(f.detected) : -1, iou, box: b ?? { top: -1, left: -1, size: 0 }, seconds };
  });
}

function formatRow(r: BenchRow): string {
  return [r.index, r.label, r.prediction, r.correct ? 1 : 0, r.detected, r.iou.toFixed(4), r.box.top, r.box.left, r.box.size, r.seconds.toFixed(2)].join('\t');
}

/** One unit of work: a chunk of images of one (attack, defence, size), or the training of one universal patch. */
export type PatchTask =
  | { kind: 'chunk'; attack: PatchAttackName | 'clean'; name: DefenceName; size: number; idx: number[] }
  | { kind: 'universal'; name: DefenceName; size: number };

/** Runs PatchTasks against one set of data and models (this thread's, or a worker thread's). */
export class PatchTaskRunner {
  private readonly defs: Record<DefenceName, Defence>;
  private readonly patches = new Map<string, tf.Tensor3D>();
  constructor(private readonly o: PatchBenchOptions) {
    this.defs = defences(o);
  }
  /** A chunk's rows; null for a universal patch's training (the patch is cached in outDir). */
  run(t: PatchTask): BenchRow[] | null {
    if (t.kind === 'universal') {
      this.patch(t.name, t.size, false); // another run training it: leave it to that run
      return null;
    }
    const patch = t.attack === 'universal' ? this.patch(t.name, t.size, true)! : undefined;
    return runChunk(this.o, t.name, this.defs[t.name], t.attack, t.size, t.idx, patch);
  }
  private patch(name: DefenceName, size: number, wait: boolean): tf.Tensor3D | null {
    const key = `${name}-${size}`;
    let p = this.patches.get(key);
    if (!p) {
      p = universal(this.o, name, this.defs[name], size, wait) ?? undefined;
      if (p) this.patches.set(key, p);
    }
    return p ?? null;
  }
  dispose(): void {
    for (const p of this.patches.values()) p.dispose();
    this.patches.clear();
  }
}

/** Run (or resume) the benchmark and write patch-bench.{json,md,svg} and the picture grid in outDir. */
export async function runPatchBench(o: PatchBenchOptions): Promise<{ markdown: string; files: string[] }> {
  mkdirSync(o.outDir, { recursive: true });
  const count = Math.min(o.count ?? 200, o.test.count);
  const order = o.indices ?? Array.from({ length: count }, (_, i) => i);
  for (const i of order) {
    if (!Number.isInteger(i) || i < 0 || i >= o.test.count) throw new RangeError(`bench patch: image index ${i} is not in ${o.test.name} (0..${o.test.count - 1})`);
  }
  if (new Set(order).size !== order.length) throw new RangeError('bench patch: an image index is given twice');
  const sizes = o.sizes ?? [4, 6, 8];
  const names = o.defences ?? [...DEFENCES];
  const attacks = o.attacks ?? ['perimage', 'universal'];
  const chunk = o.chunk ?? 10;
  const workers = Math.max(1, Math.floor(o.workers ?? 1));
  if (workers > 1 && !o.workerArgs) throw new Error('bench patch: worker threads need workerArgs (what each worker loads its data and models from)');
  const jobs: { attack: PatchAttackName | 'clean'; name: DefenceName; size: number }[] = [
    ...names.map((name) => ({ attack: 'clean' as const, name, size: 0 })),
    ...attacks.flatMap((attack) => sizes.flatMap((size) => names.map((name) => ({ attack, name, size })))),
  ];
  const logOf = (j: { attack: string; name: string; size: number }) => join(o.outDir, `${j.attack}-${j.name}${j.size ? `-s${j.size}` : ''}.tsv`);
  // every log is opened and checked against its settings before any work (a mismatch stops the run at once);
  // rowsOf: each log's rows by image, the first logged winning, brought up to date with what other runs sharing
  // the directory have logged (catchUp) before a chunk is handed out and when its rows come back
  const rowsOf = new Map(jobs.map((j) => [logOf(j), new Map(readRows(logOf(j), patchLogSettings(o, j.attack, j.name, j.size)).map((r) => [r.index, r]))]));
  const catchUp = (log: string): Map<number, BenchRow> => {
    const m = rowsOf.get(log)!;
    for (const r of loggedRows(log)) if (!m.has(r.index)) m.set(r.index, r);
    return m;
  };
  /** This run's images that a job's log holds, in `order`. */
  const rowsFor = (j: { attack: string; name: string; size: number }, m = rowsOf.get(logOf(j))!) => order.filter((i) => m.has(i)).map((i) => m.get(i)!);
  const logged = (j: { attack: string; name: string; size: number }) => rowsFor(j).length;
  // chunks of `order` per job; universal patches are trained after the per-image attacks (by one thread each) and
  // their chunks run once every patch is ready, so that no two threads train the same patch
  const chunksOf = (j: (typeof jobs)[number]): PatchTask[] => {
    const out: PatchTask[] = [];
    for (let s = 0; s < order.length; s += chunk) out.push({ kind: 'chunk', ...j, idx: order.slice(s, s + chunk) });
    return out;
  };
  const universalJobs = jobs.filter((j) => j.attack === 'universal');
  const phases: PatchTask[][] = [
    [
      ...jobs.filter((j) => j.attack !== 'universal').flatMap(chunksOf),
      ...universalJobs.filter((j) => logged(j) < order.length).map((j) => ({ kind: 'universal' as const, name: j.name, size: j.size })),
    ],
    universalJobs.flatMap(chunksOf),
  ];
  const bar = new Progress(jobs.length * order.length, 'bench patch', 10);
  // before a task is handed out: drop the images logged meanwhile (by this run or another sharing the logs)
  const skip = (t: PatchTask): boolean => {
    if (t.kind === 'universal') return logged({ attack: 'universal', ...t }) === order.length;
    const have = catchUp(logOf(t));
    t.idx = t.idx.filter((i) => !have.has(i));
    return t.idx.length === 0;
  };
  const onResult = (t: PatchTask, rows: BenchRow[] | null) => {
    if (t.kind !== 'chunk' || !rows) return;
    const log = logOf(t);
    const have = catchUp(log);
    const fresh = rows.filter((r) => !have.has(r.index));
    if (fresh.length > 0) appendFileSync(log, fresh.map(formatRow).join('\n') + '\n');
    for (const r of fresh) have.set(r.index, r);
    const mine = rowsFor(t, have);
    const acc = mine.filter((r) => r.correct).length / Math.max(1, mine.length);
    bar.update(jobs.reduce((a, j) => a + logged(j), 0), `${t.attack} ${t.name}${t.size ? ` ${t.size}x${t.size}` : ''}: acc ${(100 * acc).toFixed(1)}% (${mine.length})`);
  };
  for (const tasks of phases) {
    if (workers > 1) {
      await runInWorkers<PatchTask, BenchRow[] | null>(new URL('./bench-worker', import.meta.url), o.workerArgs, tasks, workers, onResult,
        (t) => (t.kind === 'chunk' ? `${t.attack} ${t.name} ${t.size}x${t.size} images ${t.idx.join(',')}` : `universal ${t.name} ${t.size}x${t.size}`), skip);
    } else {
      const runner = new PatchTaskRunner(o);
      try {
        for (const t of tasks) {
          if (skip(t)) continue;
          onResult(t, runner.run(t));
          await yieldToEventLoop();
        }
      } finally {
        runner.dispose();
      }
    }
  }
  // the report reads every row from the logs: also those another run sharing them has written
  const results = jobs.map((j) => ({ attack: j.attack, defence: j.name, size: j.size, rows: rowsFor(j, catchUp(logOf(j))) }));
  bar.done();
  const cleanser: CleanserSummary[] = [];
  if (o.patchcleanser !== false) {
    const variants = { classifier: { classifier: o.classifier, weights: o.models?.classifier }, ...(o.patchcleanser?.classifiers ?? {}) };
    const pbar = new Progress(Object.keys(variants).length * sizes.length * count, 'bench patch: patchcleanser', 10);
    let k = 0;
    for (const [variant, v] of Object.entries(variants)) {
      for (const size of sizes) {
        const at = k++ * count;
        cleanser.push(runCleanser(o, variant, v, size, count, chunk, (d) => pbar.update(at + d, `${variant} ${size}x${size}`)));
      }
    }
    pbar.done();
  }
  return writeReport(o, results, cleanser);
}

/** What the CLI and scripts/bench-patch.ts pass: everything optional, data and models loaded here. Plain data only. */
export interface PatchBenchArgs extends Partial<Omit<PatchBenchOptions, 'test' | 'train' | 'model' | 'classifier' | 'outDir' | 'workerArgs'>> {
  out?: string;
  /** further shipped classifier variants for the PatchCleanser baseline (e.g. classifier-masked) */
  cleanserClassifiers?: string[];
  /** 'test' (default; the Fashion-MNIST test set) or 'fixture' */
  split?: string;
}

/**
 * The benchmark's options from its arguments: the data, the shipped models and their hashes (the same in
 * every worker thread). `withCleanser` false leaves out the PatchCleanser classifiers (worker threads run
 * only the attacks).
 */
export async function loadPatchBench(a: PatchBenchArgs, withCleanser = true): Promise<PatchBenchOptions> {
  let test: Dataset;
  let train: Dataset;
  try {
    test = a.split === 'fixture' ? loadFixture() : loadDataset('fashion-mnist', 'test');
    train = loadDataset('fashion-mnist', 'train');
  } catch (e) {
    if (!(e instanceof DataNotFoundError)) throw e;
    if (withCleanser) process.stderr.write('bench patch: Fashion-MNIST not installed; using the fixture (test: images 0..499, universal training: 500..999)\n');
    const fx = loadFixture();
    test = subset(fx, Array.from({ length: 500 }, (_, i) => i), 'fashion-mnist/test-fixture');
    train = subset(fx, Array.from({ length: 500 }, (_, i) => 500 + i), 'fashion-mnist/fixture-train');
  }
  for (const d of a.defences ?? []) if (!DEFENCES.includes(d) && (d as string) !== 'patchcleanser') throw new Error(`unknown defence "${d}" (${[...DEFENCES, 'patchcleanser'].join(', ')})`);
  const cleanserAsked = a.defences === undefined || (a.defences as string[]).includes('patchcleanser');
  for (const t of a.attacks ?? []) if (t !== 'perimage' && t !== 'universal') throw new Error(`unknown attack "${t}" (perimage, universal)`);
  const clf = await loadClassifier('fashion-mnist');
  const model = await loadDiffusionModel('fashion-mnist');
  const { out, split: _split, cleanserClassifiers, ...rest } = a;
  rest.defences = a.defences?.filter((d) => d !== ('patchcleanser' as string));
  if (!cleanserAsked || !withCleanser) rest.patchcleanser = false;
  else if (cleanserClassifiers?.length) {
    const classifiers: Record<string, { classifier: LogitsFn; weights: string }> = {};
    for (const name of cleanserClassifiers) {
      const c = await loadClassifier('fashion-mnist', name);
      classifiers[name] = { classifier: (x) => c.predict(x), weights: weightsFingerprint(join(modelsDir(), 'fashion-mnist', name)) };
    }
    rest.patchcleanser = { ...(rest.patchcleanser || {}), classifiers };
  }
  const dir = join(modelsDir(), 'fashion-mnist');
  const models = { classifier: weightsFingerprint(join(dir, 'classifier')), diffusion: weightsFingerprint(join(dir, 'diffusion')) };
  return { ...rest, test, train, model, classifier: (x) => clf.predict(x), models, outDir: out ?? join('runs', 'fashion-mnist', 'bench-patch') };
}

export async function benchPatch(a: PatchBenchArgs): Promise<{ markdown: string; files: string[] }> {
  const { patchcleanser: _functions, ...plain } = a; // the worker threads get plain data (and run no PatchCleanser)
  return runPatchBench({ ...(await loadPatchBench(a)), workerArgs: plain });
}

/**
 * `advpurify bench patch [--count --sizes 4,6,8 --indices 0-199 --workers N --chunk 10 --steps --seed --out --split
 * --attacks perimage,universal --defense none,diffpure,patch,auto,patchcleanser --cleanser-classifiers a,b --json]`.
 */
export async function benchPatchCli(f: Flags): Promise<number> {
  const positive = (v: number | undefined, name: string) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new UsageError(`--${name} must be a positive integer, got ${v}`);
    return v;
  };
  const sizes = numList(f.sizes, 'sizes');
  for (const s of sizes ?? []) positive(s, 'sizes');
  const r = await benchPatch({
    count: positive(num(f.count, 'count'), 'count'), steps: positive(num(f.steps, 'steps'), 'steps'), seed: num(f.seed, 'seed'), out: f.out, split: f.split,
    sizes, indices: indexList(f.indices, 'indices'), workers: positive(num(f.workers, 'workers'), 'workers'), chunk: positive(num(f.chunk, 'chunk'), 'chunk'),
    attacks: f.attacks?.split(',') as PatchAttackName[] | undefined, defences: f.defense?.split(',') as DefenceName[] | undefined,
    cleanserClassifiers: f['cleanser-classifiers']?.split(','),
  });
  process.stdout.write(f.json ? `${JSON.stringify({ files: r.files })}\n` : r.markdown);
  return 0;
}
