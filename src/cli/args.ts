/** Shared CLI option parsing (node:util parseArgs) and conversions into typed options. */
import { parseArgs } from 'node:util';
import type { PurifyOptions } from '../purify/index.js';

export const OPTIONS = {
  output: { type: 'string', short: 'o' },
  model: { type: 'string' },
  mode: { type: 'string' },
  't-star': { type: 'string' },
  'restore-t-star': { type: 'string' },
  'restore-steps': { type: 'string' },
  'cold-steps': { type: 'string' },
  steps: { type: 'string' },
  sampler: { type: 'string' },
  sigma: { type: 'string' },
  seed: { type: 'string' },
  draws: { type: 'string' },
  votes: { type: 'string' },
  guidance: { type: 'string' },
  'keep-size': { type: 'boolean' },
  fit: { type: 'string' },
  purify: { type: 'boolean' },
  denoise: { type: 'boolean' },
  json: { type: 'boolean' },
  dataset: { type: 'string' },
  split: { type: 'string' },
  count: { type: 'string' },
  skip: { type: 'string' },
  indices: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  out: { type: 'string' },
  checkpoint: { type: 'string' },
  'noise-sigma': { type: 'string' },
  consistency: { type: 'string' },
  'consistency-eta': { type: 'string' },
  'noise-draws': { type: 'string' },
  'weights-dtype': { type: 'string' },
  'mask-aug': { type: 'string' },
  'purify-aug': { type: 'string' },
  'purify-sigma': { type: 'string' },
  'restore-aug': { type: 'boolean' },
  'purify-model': { type: 'string' },
  'purify-steps': { type: 'string' },
  'purify-fraction': { type: 'string' },
  'purified-val-count': { type: 'string' },
  'decay-from': { type: 'string' },
  'cleanser-classifiers': { type: 'string' },
  variant: { type: 'string' },
  base: { type: 'string' },
  n0: { type: 'string' },
  n: { type: 'string' },
  alpha: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  workers: { type: 'string' },
  'adv-eps': { type: 'string' },
  'adv-steps': { type: 'string' },
  'smooth-adv': { type: 'string' },
  'adv-warmup': { type: 'string' },
  'steps-per-epoch': { type: 'string' },
  'robust-val-count': { type: 'string' },
  norm: { type: 'string' },
  eps: { type: 'string' },
  defense: { type: 'string' },
  attacks: { type: 'string' },
  preset: { type: 'string' },
  'report-cost': { type: 'boolean' },
  reverse: { type: 'boolean' },
  degradations: { type: 'string' },
  severities: { type: 'string' },
  preprocessors: { type: 'string' },
  chunk: { type: 'string' },
  sizes: { type: 'string' },
  init: { type: 'string' },
  restorer: { type: 'string' },
  'validate-every': { type: 'string' },
  classifier: { type: 'string' },
  mse: { type: 'string' },
  'acr-val-count': { type: 'string' },
  'student-ch': { type: 'string' },
  distill: { type: 'string' },
  cls: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export type Flags = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

export class UsageError extends Error {
  readonly code = 'USAGE';
}

export function parse(argv: string[]): { positionals: string[]; flags: Flags } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
    return { positionals, flags: values as Flags };
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

export function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new UsageError(`--${name} must be a number, got "${v}"`);
  return x;
}

export function numList(v: string | undefined, name: string): number[] | undefined {
  return v === undefined ? undefined : v.split(',').map((s) => num(s.trim(), name) as number);
}

/**
 * `--indices 0-49,60,99-70`: data set indices in the order given; a range runs either way (99-70 counts down),
 * so that two runs sharing a log can work from opposite ends of the same images.
 */
export function indexList(v: string | undefined, name: string): number[] | undefined {
  if (v === undefined) return undefined;
  const out: number[] = [];
  for (const part of v.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new UsageError(`--${name} takes indices and ranges like 0-49,60,99-70, got "${part}"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    const step = b >= a ? 1 : -1;
    for (let i = a; i !== b + step; i += step) out.push(i);
  }
  if (new Set(out).size !== out.length) throw new UsageError(`--${name} names an index twice: "${v}"`);
  return out;
}

export function purifyOptions(f: Flags): PurifyOptions {
  const o: PurifyOptions = {};
  if (f.model) o.model = f.model;
  if (f.mode) o.mode = f.mode as PurifyOptions['mode'];
  if (f['t-star']) o.tStar = num(f['t-star'], 't-star');
  if (f.steps) o.steps = num(f.steps, 'steps');
  if (f.sampler) o.sampler = f.sampler as PurifyOptions['sampler'];
  if (f.sigma) o.sigma = num(f.sigma, 'sigma');
  if (f.seed) o.seed = num(f.seed, 'seed');
  if (f.draws) o.draws = num(f.draws, 'draws');
  if (f.guidance) o.guidance = num(f.guidance, 'guidance');
  if (f.restorer) o.restorer = f.restorer as PurifyOptions['restorer'];
  return o;
}
