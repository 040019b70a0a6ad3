/**
 * `advpurify bench robustness` (flags -> runRobustness / attackCost):
 *   advpurify bench robustness --dataset fashion-mnist --split test --count 200 --norm linf --eps 0.05,0.1,0.15
 *     --defense none,jpeg,bitdepth,median,diffpure,oneshot,adv --attacks pgd,apgd,square --preset standard
 *     [--out runs/robustness] [--workers N] [--batch-size 10] [--seed 0] [--t-star --steps --sampler --sigma --votes k --restorer cold|x0] [--reverse] [--json]
 *   (--reverse: batches from the last image backwards, for a second run sharing --out; each run skips what the other logged)
 *   (--votes k: the purifier deployed with `draws: k`, k purifications majority-voted per classification)
 *   advpurify bench robustness --report-cost [--defense ... --preset ...]
 * Rerunning the same command resumes from the per-defence logs in --out.
 */
import { readFileSync } from 'node:fs';
import { UsageError, num, numList, type Flags } from '../../src/cli/args.js';
import type { DatasetName } from '../../src/data/index.js';
import type { PurifyOptions } from '../../src/purify/index.js';
import type { Norm } from '../common.js';
import { PRESET_NAMES, checkAttacks, defaultAttacks, type PresetName } from './config.js';
import { attackCost, renderCost } from './cost.js';
import { runRobustness } from './run.js';

export const DEFAULT_DEFENSES = ['none', 'jpeg', 'bitdepth', 'median', 'diffpure', 'oneshot', 'adv'];

function list(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean);
}

/** The purifier flags of `bench robustness` (the same names as `advpurify purify`). */
export function purifyFlags(f: Flags): PurifyOptions {
  const o: PurifyOptions = {};
  if (f['t-star'] !== undefined) o.tStar = num(f['t-star'], 't-star');
  if (f.steps !== undefined) o.steps = num(f.steps, 'steps');
  if (f.sigma !== undefined) o.sigma = num(f.sigma, 'sigma');
  if (f.sampler !== undefined) o.sampler = f.sampler as PurifyOptions['sampler'];
  if (f.guidance !== undefined) o.guidance = num(f.guidance, 'guidance');
  if (f.votes !== undefined) o.draws = num(f.votes, 'votes');
  if (f.restorer !== undefined) o.restorer = f.restorer as PurifyOptions['restorer'];
  return o;
}

export async function benchRobustness(f: Flags): Promise<number> {
  const dataset = (f.dataset ?? 'fashion-mnist') as DatasetName;
  if (dataset !== 'fashion-mnist' && dataset !== 'mnist') throw new UsageError(`--dataset must be fashion-mnist or mnist, got "${dataset}"`);
  const normFlag = (f.norm ?? 'linf').toLowerCase();
  if (normFlag !== 'linf' && normFlag !== 'l2') throw new UsageError(`--norm must be linf or l2, got "${f.norm}"`);
  const norm: Norm = normFlag === 'linf' ? 'Linf' : 'L2';
  const preset = (f.preset ?? 'standard') as PresetName;
  if (!PRESET_NAMES.includes(preset)) throw new UsageError(`--preset must be one of ${PRESET_NAMES.join(', ')}, got "${preset}"`);
  const defenses = list(f.defense) ?? DEFAULT_DEFENSES;
  let attacks;
  try {
    attacks = checkAttacks(list(f.attacks) ?? defaultAttacks(norm), norm);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const batchSize = num(f['batch-size'], 'batch-size');
  const purify = purifyFlags(f);

  if (f['report-cost']) {
    const r = await attackCost({ dataset, defenses, preset, norm, attacks, batchSize, purify });
    process.stdout.write(f.json ? `${JSON.stringify(r)}\n` : renderCost(r));
    return 0;
  }
  const split = f.split ?? 'test';
  if (split !== 'test' && split !== 'val' && split !== 'fixture') throw new UsageError(`--split must be test, val or fixture, got "${split}"`);
  const r = await runRobustness({
    dataset, split, norm, preset, attacks, defenses, purify, batchSize,
    count: num(f.count, 'count') ?? 200,
    eps: numList(f.eps, 'eps') ?? [norm === 'Linf' ? 0.1 : 1.0],
    seed: num(f.seed, 'seed'),
    workers: num(f.workers, 'workers'),
    reverse: f.reverse === true,
    outDir: f.out ?? 'runs/robustness',
  });
  process.stdout.write(f.json ? `${JSON.stringify(r.report)}\n` : readFileSync(r.files.markdown, 'utf8'));
  process.stderr.write(`bench robustness: ${r.computed} image-attacks computed this run; report in ${r.files.markdown}, ${r.files.json}, ${r.files.svg}\n`);
  return 0;
}
