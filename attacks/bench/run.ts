/**
 * The harness behind `advpurify bench robustness`: every defence is attacked on the same images with the
 * same attacks; each (defence, eps, batch of images) is a task; finished images go to the defence's JSONL
 * log as soon as their batch is done, so an interrupted run resumes where it stopped. Tasks are spread
 * over worker threads (one tfjs instance, one core each). At the end: robustness.json, robustness.md and
 * robustness.svg in the output directory.
 *
 * Seeds depend only on (run seed, defence, eps, first image of the batch): results do not depend on the
 * number of workers, on resumption, or on which of several runs sharing the logs computed a batch.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/backend/index.js';
import type { DatasetName } from '../../src/data/index.js';
import { modelsDir } from '../../src/models/paths.js';
import { weightsFingerprint } from '../../src/models/weights.js';
import { resolveOptions, type PurifyOptions } from '../../src/purify/index.js';
import { Progress } from '../../src/util/progress.js';
import type { Norm } from '../common.js';
import { defenseClassifier, describeDefense, parseDefense, purifierMode, type DefenseSetup } from '../defenses.js';
import { PRESETS, defaultAttacks, type AttackName, type AttackSettings, type PresetName } from './config.js';
import type { ImageRow } from './evaluate.js';
import { LOG_FORMAT, appendRows, canonical, logPath, openLog, readLog, rowKey, type LogHeader } from './log.js';
import { renderMarkdown, renderSvg, summarise, type RobustnessReport, type ResultRow } from './report.js';
import { TaskRunner, loadImages, runInWorkers, type RunSpec, type Task } from './tasks.js';
import { yieldToEventLoop } from '../../src/util/yield.js';

export interface RobustnessOptions {
  dataset: DatasetName;
  split: 'test' | 'val' | 'fixture';
  /** images 0..count-1 of the split */
  count: number;
  norm: Norm;
  eps: number[];
  /** defence specs, e.g. ['none', 'jpeg:75', 'diffpure'] */
  defenses: string[];
  attacks?: AttackName[]; // default: defaultAttacks(norm)
  preset: PresetName;
  /** overrides of the preset's budgets */
  settings?: Partial<AttackSettings>;
  seed?: number; // default 0
  batchSize?: number; // images per task, default 10
  /** worker threads; <= 1 runs in this thread (default) */
  workers?: number;
  /**
   * Take the batches from the last image backwards. Several runs may share `outDir` (processes, or machines
   * whose logs are merged): each reads the log again before every batch and leaves out the images another run
   * has logged, so a second run started with `reverse` meets the first in the middle. Batches and their seeds are
   * those of a forward run, so the rows do not depend on which run computed them.
   */
  reverse?: boolean;
  outDir: string;
  /** purifier options for the diffpure/oneshot defences */
  purify?: PurifyOptions;
  /** Builds defences in this thread instead of loadDefense (in-process runs only; tests). */
  build?: (spec: string) => Promise<DefenseSetup>;
  onProgress?: (p: { done: number; total: number; defense: string; eps: number }) => void;
}

export interface RobustnessResult {
  report: RobustnessReport;
  files: { logs: string[]; json: string; markdown: string; svg: string };
  /** images attacked by this invocation (0 when everything was already logged) */
  computed: number;
}

/** Short content hashes of the weights a defence uses: a log is never continued with other models. */
function modelFingerprint(dataset: string, defense: string): Record<string, string> {
  const { name } = parseDefense(defense);
  const mode = purifierMode(name);
  const clf = defenseClassifier(defense);
  const files = [clf, ...(mode === 'restore' ? ['restore'] : mode ? ['diffusion'] : [])];
  const out: Record<string, string> = {};
  for (const f of files) out[f] = weightsFingerprint(join(modelsDir(), dataset, f));
  return out;
}

/**
 * The purifier settings a defence's rows depend on, resolved against the current defaults: a log written
 * before a default changed (e.g. t* 100 -> 450) is refused on resume instead of being continued under
 * the new value. Only the fields the mode uses, so an unrelated default does not orphan a log.
 */
export function purifyRecord(mode: 'diffpure' | 'oneshot' | 'restore', purify: PurifyOptions = {}): Record<string, unknown> {
  const r = resolveOptions({ ...purify, mode });
  // guidance and votes are recorded only when used, so logs written before they existed keep matching
  const votes = r.draws > 1 ? { votes: r.draws } : {};
  if (mode === 'diffpure') return { tStar: r.tStar, steps: r.steps, sampler: r.sampler, ...(r.guidance > 0 ? { guidance: r.guidance } : {}), ...votes };
  if (mode === 'oneshot') return { ...(r.sigma !== undefined ? { sigma: r.sigma } : { tStar: r.tStar }), ...votes };
  return { restorer: r.restorer, tStar: r.tStar, steps: r.steps, sampler: r.sampler, sigma: r.sigma, ...votes };
}

function headerFor(spec: RunSpec, defense: string): LogHeader {
  const { name } = parseDefense(defense);
  const mode = purifierMode(name);
  return {
    format: LOG_FORMAT,
    defense,
    config: {
      dataset: spec.dataset, split: spec.split, norm: spec.norm, attacks: spec.attacks, settings: spec.settings, seed: spec.seed,
      purify: mode ? purifyRecord(mode, spec.purify) : undefined, models: modelFingerprint(spec.dataset, defense),
    },
  };
}

export async function runRobustness(o: RobustnessOptions): Promise<RobustnessResult> {
  const t0 = performance.now();
  const backend = await initBackend();
  if (o.defenses.length === 0 || o.eps.length === 0) throw new RangeError('need at least one defence and one eps');
  o.defenses.forEach((d) => parseDefense(d));
  if (o.eps.some((e) => !(e > 0))) throw new RangeError(`eps must be > 0, got ${o.eps.join(',')}`);
  const spec: RunSpec = {
    dataset: o.dataset, split: o.split, norm: o.norm, attacks: o.attacks ?? defaultAttacks(o.norm),
    settings: { ...PRESETS[o.preset], ...o.settings }, seed: o.seed ?? 0, purify: o.purify,
  };
  const ds = loadImages(spec);
  const count = Math.min(o.count, ds.count);
  const batchSize = o.batchSize ?? 10;
  mkdirSync(o.outDir, { recursive: true });

  // open the logs; plan the (defence, eps, batch) tasks still to do
  const logged = new Map<string, Map<string, ImageRow>>();
  const tasks: Task[] = [];
  for (const defense of o.defenses) {
    const header = headerFor(spec, defense);
    const missing = Object.entries(header.config.models as Record<string, string>).filter(([, v]) => v === 'missing').map(([k]) => k);
    if (missing.length && !o.build) {
      const hint = missing.includes('classifier-adv') ? ` (train it: advpurify train classifier --dataset ${o.dataset} --variant classifier-adv --init models/${o.dataset}/classifier --lr 1e-3 --epochs 2 --adv-eps 0.1 --adv-steps 7)` : '';
      throw new Error(`defence ${defense} needs ${missing.map((m) => `${modelsDir()}/${o.dataset}/${m}.bin`).join(', ')}${hint}`);
    }
  }
  for (const defense of o.defenses) {
    const rows = openLog(logPath(o.outDir, defense), headerFor(spec, defense));
    logged.set(defense, new Map(rows.map((r) => [rowKey(r.eps, r.index), r])));
  }
  for (const eps of o.eps) {
    for (const defense of o.defenses) {
      for (let s = 0; s < count; s += batchSize) {
        const indices = Array.from({ length: Math.min(batchSize, count - s) }, (_, i) => s + i).filter((i) => !logged.get(defense)!.has(rowKey(eps, i)));
        if (indices.length) tasks.push({ defense, eps, indices, seedIndex: s });
      }
    }
  }

  if (o.reverse) tasks.reverse();

  const total = tasks.reduce((n, t) => n + t.indices.length, 0);
  const bar = new Progress(total, 'robustness', 60);
  let done = 0;
  let attacked = 0; // by this run (done also counts images another run logged meanwhile)
  // Another run may be appending to the same logs: just before a batch starts, the images it has logged since
  // are taken into this run's rows and left out of the batch (true: nothing of the batch is left to do).
  const loggedElsewhere = (task: Task): boolean => {
    const now = readLog(logPath(o.outDir, task.defense));
    const header = headerFor(spec, task.defense);
    if (!now || now.header.defense !== task.defense || canonical(now.header.config) !== canonical(header.config)) return false;
    const seen = logged.get(task.defense)!;
    for (const r of now.rows) if (!seen.has(rowKey(r.eps, r.index))) seen.set(rowKey(r.eps, r.index), r);
    const left = task.indices.filter((i) => !seen.has(rowKey(task.eps, i)));
    if (left.length < task.indices.length) {
      done += task.indices.length - left.length;
      bar.update(done, `${task.defense} eps=${task.eps} (logged by another run)`);
      task.indices = left;
    }
    return left.length === 0;
  };
  const onRows = (task: Task, rows: ImageRow[]) => {
    appendRows(logPath(o.outDir, task.defense), rows);
    for (const r of rows) logged.get(task.defense)!.set(rowKey(r.eps, r.index), r);
    done += rows.length;
    attacked += rows.length;
    bar.update(done, `${task.defense} eps=${task.eps}`);
    o.onProgress?.({ done, total, defense: task.defense, eps: task.eps });
  };
  if (tasks.length) {
    if ((o.workers ?? 1) > 1 && !o.build) await runInWorkers(spec, tasks, o.workers!, onRows, loggedElsewhere);
    else {
      const runner = new TaskRunner(spec, ds, o.build);
      for (const task of tasks) {
        if (loggedElsewhere(task)) continue;
        onRows(task, await runner.run(task));
        await yieldToEventLoop(); // let pending I/O through between batches
      }
    }
    bar.done();
  }

  // Defences that earlier runs logged in the same directory under the same images, attacks and weights stay
  // in the report (a one-defence run would otherwise rewrite it with its own row only); logs written under
  // other settings or with other weights are left out.
  const others = otherLogs(o.outDir, spec, o.defenses);
  for (const other of others) logged.set(other.defense, new Map(other.rows.map((r) => [rowKey(r.eps, r.index), r])));
  const reported = [...o.defenses.map((d) => ({ defense: d, purify: o.purify })), ...others];

  const results: ResultRow[] = [];
  let computeSeconds = 0;
  for (const eps of o.eps) {
    for (const { defense, purify } of reported) {
      const rows = Array.from({ length: count }, (_, i) => logged.get(defense)!.get(rowKey(eps, i))).filter((r): r is ImageRow => r !== undefined);
      if (rows.length === 0 && !o.defenses.includes(defense)) continue;
      computeSeconds += rows.reduce((s, r) => s + Object.values(r.seconds).reduce((a, b) => a + b, 0), 0);
      const randomized = ['diffpure', 'oneshot'].some((p) => defense.startsWith(p));
      results.push(summarise(defense, eps, rows, spec.attacks, randomized ? spec.settings.draws : 1, safeDescribe(defense, purify)));
    }
  }
  const cpu = cpus();
  const report: RobustnessReport = {
    dataset: ds.name, split: o.split, count, norm: o.norm, eps: o.eps, preset: o.preset, settings: { ...spec.settings }, attacks: spec.attacks,
    seed: spec.seed, machine: `${cpu[0]?.model ?? 'cpu'} x${cpu.length}`, backend: backend.name, date: new Date().toISOString(),
    wallSeconds: (performance.now() - t0) / 1000, computeSeconds, results,
  };
  const files = {
    logs: o.defenses.map((d) => logPath(o.outDir, d)),
    json: join(o.outDir, 'robustness.json'),
    markdown: join(o.outDir, 'robustness.md'),
    svg: join(o.outDir, 'robustness.svg'),
  };
  writeFileSync(files.json, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(files.markdown, renderMarkdown(report));
  writeFileSync(files.svg, renderSvg(report));
  return { report, files, computed: attacked };
}

/** The purifier options a log's recorded settings stand for (purifyRecord's inverse). */
function optionsOf(record: unknown): PurifyOptions | undefined {
  if (!record || typeof record !== 'object') return undefined;
  const { votes, ...rest } = record as Record<string, unknown>;
  return { ...(rest as PurifyOptions), ...(typeof votes === 'number' ? { draws: votes } : {}) };
}

/** Logs in outDir of defences not in this run whose header is what this run would write for them. */
function otherLogs(outDir: string, spec: RunSpec, requested: readonly string[]): { defense: string; rows: ImageRow[]; purify?: PurifyOptions }[] {
  const mine = new Set(requested.map((d) => logPath(outDir, d)));
  const out: { defense: string; rows: ImageRow[]; purify?: PurifyOptions }[] = [];
  for (const file of readdirSync(outDir).filter((f) => f.endsWith('.jsonl')).sort()) {
    const path = join(outDir, file);
    if (mine.has(path)) continue;
    const log = readLog(path);
    if (!log || logPath(outDir, log.header.defense) !== path) continue;
    const purify = optionsOf(log.header.config.purify);
    try {
      if (canonical(headerFor({ ...spec, purify }, log.header.defense).config) !== canonical(log.header.config)) continue;
    } catch {
      continue; // a defence this version no longer knows
    }
    out.push({ defense: log.header.defense, rows: log.rows, purify });
  }
  return out;
}

function safeDescribe(defense: string, purify?: PurifyOptions): string {
  try {
    return describeDefense(defense, purify);
  } catch {
    return '';
  }
}
