/** The CLI's commands. Each returns an exit code; results go to stdout (JSON with --json), progress to stderr. */
import { defaultWorkers } from '../util/threads.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../backend/index.js';
import { loadDataset, loadFixture, take, type Dataset, type DatasetName } from '../data/index.js';
import { createPurifier, loadClassifier, loadDiffusionModel, decodeImage, type ImagePurifier } from '../purify/index.js';
import type { Classifier } from '../types.js';
import { Progress } from '../util/progress.js';
import { UsageError, indexList, num, numList, purifyOptions, type Flags } from './args.js';

type Command = (pos: string[], f: Flags) => Promise<number | void>;

const out = (f: Flags, obj: Record<string, unknown>, text: string) => process.stdout.write(f.json ? `${JSON.stringify(obj)}\n` : `${text}\n`);

function datasetOf(f: Flags): DatasetName {
  const d = f.dataset ?? 'fashion-mnist';
  if (d !== 'fashion-mnist' && d !== 'mnist') throw new UsageError(`--dataset must be fashion-mnist or mnist, got "${d}"`);
  return d;
}

export function loadSplit(f: Flags): Dataset {
  const split = f.split ?? 'val';
  const ds = split === 'fixture' ? loadFixture() : loadDataset(datasetOf(f), split as 'val' | 'test' | 'train');
  const count = num(f.count, 'count');
  return count ? take(ds, count) : ds;
}

/** Accuracy of `clf` on `ds`, after `purifier` when given (majority vote over its draws). */
export function evaluate(clf: Classifier, ds: Dataset, purifier?: ImagePurifier, batchSize = 50, label = 'eval'): number {
  let correct = 0;
  const bar = new Progress(ds.count, label);
  for (let s = 0; s < ds.count; s += batchSize) {
    const e = Math.min(ds.count, s + batchSize);
    const size = ds.shape[0] * ds.shape[1] * ds.shape[2];
    const x = tf.tensor4d(ds.images.subarray(s * size, e * size), [e - s, ...ds.shape]);
    let labels: Int32Array;
    if (purifier) labels = purifier.classify(clf, x).labels;
    else labels = tf.tidy(() => clf.predict(x).argMax(-1).dataSync() as Int32Array);
    x.dispose();
    for (let i = 0; i < labels.length; i++) if (labels[i] === ds.labels[s + i]) correct++;
    bar.update(e);
  }
  bar.done();
  return correct / ds.count;
}

const purify: Command = async (pos, f) => {
  const [input] = pos;
  if (!input || !f.output) throw new UsageError('usage: advpurify purify <in> -o <out.png> [--mode --t-star --steps --seed]');
  const p = await createPurifier(purifyOptions(f));
  const t0 = performance.now();
  const r = await p.purifyImage(readFileSync(input), { keepSize: f['keep-size'], fit: f.fit as 'contain' | undefined });
  r.tensor.dispose();
  writeFileSync(f.output, r.png);
  const ms = performance.now() - t0;
  out(f, { input, output: f.output, mode: p.options.mode, tStar: p.options.tStar, steps: p.options.steps, width: r.width, height: r.height, ms },
    `${f.output}: ${r.width}x${r.height}, mode ${p.options.mode}, ${ms.toFixed(0)} ms`);
};

const classify: Command = async (pos, f) => {
  const [input] = pos;
  if (!input) throw new UsageError('usage: advpurify classify <in> [--purify ...] [--json]');
  const model = f.model ?? 'fashion-mnist';
  const clf = await loadClassifier(model, f.variant ?? 'classifier');
  const p = await createPurifier({ ...purifyOptions(f), mode: f.purify ? (purifyOptions(f).mode ?? 'diffpure') : 'none' });
  const [h, w, c] = clf.inputShape;
  const dec = await decodeImage(readFileSync(input), { height: h, width: w, channels: c as 1 | 3 });
  const r = p.classify(clf, dec.tensor);
  dec.tensor.dispose();
  const probs = Array.from(r.probabilities);
  const label = r.labels[0];
  out(f, { label, className: clf.classNames[label], probabilities: probs, votes: Array.from(r.votes), mode: p.options.mode, draws: p.options.draws },
    `${clf.classNames[label]} (class ${label}, p=${probs[label].toFixed(3)}${p.options.mode !== 'none' ? `, after ${p.options.mode} x${p.options.draws}` : ''})`);
};

const evalCmd: Command = async (_pos, f) => {
  const ds = loadSplit(f);
  if (f.denoise) {
    const { denoisingPsnr } = await import('../bench/quality.js');
    const dm = await loadDiffusionModel(f.model ?? datasetOf(f));
    const rows = denoisingPsnr(dm, ds, numList(f.sigma, 'sigma') ?? [0.25, 0.5, 1.0], num(f.seed, 'seed') ?? 0);
    const text = ['| sigma | t | noisy PSNR (dB) | denoised PSNR (dB) |', '|---|---|---|---|', ...rows.map((r) => `| ${r.sigma} | ${r.t} | ${r.noisyPsnr.toFixed(2)} | ${r.denoisedPsnr.toFixed(2)} |`)];
    out(f, { dataset: ds.name, count: ds.count, rows }, `${ds.name} (${ds.count} images)\n${text.join('\n')}`);
    return;
  }
  const clf = await loadClassifier(f.model ?? datasetOf(f), f.variant ?? 'classifier');
  const opts = purifyOptions(f);
  const p = opts.mode && opts.mode !== 'none' ? await createPurifier({ ...opts, model: f.model ?? datasetOf(f) }) : undefined;
  const t0 = performance.now();
  const acc = evaluate(clf, ds, p, 50, `eval ${p ? p.options.mode : 'clean'}`);
  const s = (performance.now() - t0) / 1000;
  out(f, { dataset: ds.name, count: ds.count, mode: p?.options.mode ?? 'none', tStar: p?.options.tStar, steps: p?.options.steps, sampler: p?.options.sampler, draws: p?.options.draws, guidance: p?.options.guidance, accuracy: acc, seconds: s },
    `${ds.name} (${ds.count}): accuracy ${(100 * acc).toFixed(2)}% [${p ? `${p.options.mode} t*=${p.t} steps=${p.options.steps} ${p.options.sampler} draws=${p.options.draws}${p.options.guidance > 0 ? ` guidance=${p.options.guidance}` : ''}` : 'no purification'}] ${s.toFixed(1)} s`);
};

const train: Command = async (pos, f) => {
  const what = pos[0];
  const dataset = datasetOf(f);
  const seed = num(f.seed, 'seed') ?? 1;
  const { initBackend } = await import('../backend/index.js');
  await initBackend();
  if (what === 'classifier') {
    const { trainClassifier } = await import('../train/classifier.js');
    const variant = f.variant ?? 'classifier';
    // PGD adversarial training (Madry et al.) with --adv-eps, or by default for --variant classifier-adv
    // or SmoothAdv (Salman et al.) with --smooth-adv EPS: PGD in L2 on the smoothed classifier over --noise-draws noise draws
    const smoothAdvEps = num(f['smooth-adv'], 'smooth-adv');
    if (smoothAdvEps !== undefined && f['adv-eps'] !== undefined) throw new UsageError('--smooth-adv (L2 attack on the smoothed classifier) and --adv-eps (PGD on the classifier) exclude each other');
    if (smoothAdvEps !== undefined && !(smoothAdvEps > 0)) throw new UsageError(`--smooth-adv must be an L2 radius > 0, got "${f['smooth-adv']}"`);
    if (smoothAdvEps !== undefined && f['noise-sigma'] === undefined) throw new UsageError('--smooth-adv attacks the smoothed classifier: give --noise-sigma (Gaussian-noise training) too');
    if (f['adv-warmup'] !== undefined && smoothAdvEps === undefined) throw new UsageError('--adv-warmup goes with --smooth-adv EPS');
    const adversarial = f['adv-eps'] !== undefined || (variant === 'classifier-adv' && smoothAdvEps === undefined);
    const advSteps = num(f['adv-steps'], 'adv-steps');
    const adversary = smoothAdvEps !== undefined
      ? (await import('../train/adversarial.js')).smoothAdvAdversary({ eps: smoothAdvEps, steps: advSteps ?? 10, draws: num(f['noise-draws'], 'noise-draws') ?? (f.consistency !== undefined ? 2 : 4), warmupEpochs: num(f['adv-warmup'], 'adv-warmup'), seed })
      : adversarial
        ? (await import('../train/adversarial.js')).pgdAdversary({ eps: num(f['adv-eps'], 'adv-eps') ?? 0.1, steps: advSteps ?? 7, seed })
        : undefined;
    const weightsDtype = f['weights-dtype'] ?? 'float16';
    if (weightsDtype !== 'float16' && weightsDtype !== 'uint8') throw new UsageError(`--weights-dtype must be float16 or uint8, got "${weightsDtype}"`);
    // purification-aware training: part of each batch purified by diffpure at a t* drawn from --purify-aug
    // or, with --purify-sigma S, the base classifier of denoised smoothing: batches one-shot denoised from x + N(0, S^2)
    const tStars = numList(f['purify-aug'], 'purify-aug');
    const ddsSigma = num(f['purify-sigma'], 'purify-sigma');
    if (ddsSigma !== undefined && tStars?.length) throw new UsageError('--purify-aug (diffpure at t*) and --purify-sigma (denoised smoothing) exclude each other');
    if (ddsSigma !== undefined && !(ddsSigma > 0 && ddsSigma <= 2)) throw new UsageError(`--purify-sigma must be a noise level in (0, 2], got "${f['purify-sigma']}"`);
    if (f['restore-aug'] && (ddsSigma !== undefined || tStars?.length)) throw new UsageError('--restore-aug (restored degraded images) excludes --purify-aug and --purify-sigma');
    if (f['restore-aug'] && f['purify-steps'] !== undefined) throw new UsageError('--restore-aug restores with mode restore\'s defaults: drop --purify-steps');
    if (ddsSigma !== undefined && f['noise-sigma'] !== undefined) throw new UsageError('--purify-sigma adds its own noise (then denoises it): drop --noise-sigma');
    const fraction = num(f['purify-fraction'], 'purify-fraction');
    const lambda = num(f.consistency, 'consistency');
    if (lambda !== undefined && !(lambda >= 0)) throw new UsageError(`--consistency must be a weight >= 0, got "${f.consistency}"`);
    if (f['consistency-eta'] !== undefined && lambda === undefined) throw new UsageError('--consistency-eta goes with --consistency LAMBDA');
    if (f['noise-draws'] !== undefined && lambda === undefined && smoothAdvEps === undefined) throw new UsageError('--noise-draws goes with --consistency LAMBDA or --smooth-adv EPS');
    if (lambda !== undefined && f['noise-sigma'] === undefined && ddsSigma === undefined) {
      throw new UsageError('--consistency regularizes training under noise: give --noise-sigma (Gaussian-noise training) or --purify-sigma (denoised smoothing) too');
    }
    if (lambda !== undefined && ddsSigma !== undefined && fraction !== undefined && fraction !== 1) throw new UsageError('--consistency with --purify-sigma denoises every row: drop --purify-fraction');
    const draws = num(f['noise-draws'], 'noise-draws');
    if (draws !== undefined && !(Number.isInteger(draws) && draws >= (lambda === undefined ? 1 : 2))) throw new UsageError(`--noise-draws must be an integer >= ${lambda === undefined ? 1 : 2}, got "${f['noise-draws']}"`);
    const consistency = lambda === undefined ? undefined : { lambda, eta: num(f['consistency-eta'], 'consistency-eta') ?? 0.5, draws: draws ?? 2 };
    const augment = await import('../train/purify-aug.js');
    const purifyAug = ddsSigma !== undefined
      ? await augment.ddsAugmenter({ model: f['purify-model'] ?? dataset, sigma: ddsSigma, fraction })
      : tStars?.length
        ? await augment.purifyAugmenter({ model: f['purify-model'] ?? dataset, tStars, steps: num(f['purify-steps'], 'purify-steps'), fraction })
        : f['restore-aug']
          ? await augment.restoreAugmenter({ model: f['purify-model'] ?? dataset, fraction })
          : undefined;
    const r = await trainClassifier({
      dataset, seed, weightsDtype, purifyAug, purifiedValCount: num(f['purified-val-count'], 'purified-val-count'), out: f.out ?? join('models', dataset, variant), checkpoint: f.checkpoint ?? join('runs', dataset, `${variant}.ckpt`),
      epochs: num(f.epochs, 'epochs') ?? 12, batchSize: num(f['batch-size'], 'batch-size') ?? 128, lr: num(f.lr, 'lr') ?? 2e-3,
      noiseSigma: num(f['noise-sigma'], 'noise-sigma'), adversary, stepsPerEpoch: num(f['steps-per-epoch'], 'steps-per-epoch'),
      init: f.init, robustValCount: num(f['robust-val-count'], 'robust-val-count'), maskAug: numList(f['mask-aug'], 'mask-aug'), consistency,
    });
    out(f, r, r.selectedBy === 'acr' ? `best validation ACR of the smoothed classifier ${r.valAcc.toFixed(3)}`
      : `best validation ${r.selectedBy === 'clean+purified' ? 'score (mean of clean and purified accuracies)' : 'accuracy'} ${(100 * r.valAcc).toFixed(2)}%${r.selectedBy === 'robust' ? ' under the training attack' : ''}`);
  } else if (what === 'diffusion') {
    const { trainDiffusion } = await import('../train/diffusion.js');
    await trainDiffusion({
      dataset, seed, out: f.out ?? join('models', dataset, 'diffusion'), checkpoint: f.checkpoint ?? join('runs', dataset, 'diffusion.ckpt'),
      steps: num(f.steps, 'steps') ?? 20000, batchSize: num(f['batch-size'], 'batch-size') ?? 64, lr: num(f.lr, 'lr') ?? 1e-3, checkpointEvery: 100,
      decayFrom: num(f['decay-from'], 'decay-from'),
    });
  } else if (what === 'restore') {
    const { trainRestore } = await import('../train/restore.js');
    const { modelsDir } = await import('../models/paths.js');
    const r = await trainRestore({
      dataset, seed, out: f.out ?? join('models', dataset, 'restore'), checkpoint: f.checkpoint ?? join('runs', dataset, 'restore.ckpt'),
      init: f.init ?? join(modelsDir(), dataset, 'diffusion'), steps: num(f.steps, 'steps') ?? 10000, batchSize: num(f['batch-size'], 'batch-size') ?? 64,
      lr: num(f.lr, 'lr') ?? 5e-4, checkpointEvery: 100, validateEvery: num(f['validate-every'], 'validate-every') ?? 500,
      decayFrom: num(f['decay-from'], 'decay-from'),
    });
    out(f, r, `restore: step ${r.step}, loss ${r.lossAvg.toFixed(4)}, level loss ${r.levelLossAvg.toFixed(3)}`);
  } else if (what === 'denoiser') {
    // denoised smoothing's denoiser: the diffusion model fine-tuned at one sigma through a frozen classifier
    const { trainDenoiser } = await import('../train/denoiser.js');
    const { modelsDir } = await import('../models/paths.js');
    const sigma = num(f.sigma, 'sigma');
    if (sigma === undefined || !(sigma > 0 && sigma <= 2)) throw new UsageError(`train denoiser needs --sigma in (0, 2] (the smoothing noise level), got "${f.sigma ?? ''}"`);
    if (!f.classifier) throw new UsageError('train denoiser needs --classifier PATH (weights without suffix): the frozen classifier behind the denoiser, e.g. a dds-cons classifier of this sigma');
    const name = `diffusion-dds${sigma}`;
    const r = await trainDenoiser({
      dataset, seed, sigma, classifier: f.classifier, init: f.init ?? join(modelsDir(), dataset, 'diffusion'),
      out: f.out ?? join('runs', dataset, name), checkpoint: f.checkpoint ?? join('runs', dataset, `${name}.ckpt`),
      steps: num(f.steps, 'steps') ?? 2000, batchSize: num(f['batch-size'], 'batch-size'), lr: num(f.lr, 'lr'),
      lambda: num(f.consistency, 'consistency'), eta: num(f['consistency-eta'], 'consistency-eta'), draws: num(f['noise-draws'], 'noise-draws'),
      mse: num(f.mse, 'mse'), validateEvery: num(f['validate-every'], 'validate-every'), acrValCount: num(f['acr-val-count'], 'acr-val-count'),
      studentCh: num(f['student-ch'], 'student-ch'), distill: num(f.distill, 'distill'), cls: num(f.cls, 'cls'),
    });
    out(f, r, `denoiser sigma ${sigma}: step ${r.step}, validation ACR ${r.initialAcr?.toFixed(3) ?? '-'} at the start, best ${r.bestAcr?.toFixed(3) ?? '-'}${r.bestStep !== undefined ? ` (step ${r.bestStep})` : ''}`);
  } else throw new UsageError('usage: advpurify train classifier|diffusion|restore|denoiser --dataset fashion-mnist|mnist [...]');
};

const certify: Command = async (_pos, f) => {
  const { runCertify, baseModels, maxCertifiableRadius, BASE_KINDS } = await import('../../certify/index.js');
  const dataset = datasetOf(f);
  const sigmas = numList(f.sigma, 'sigma') ?? [0.25, 0.5, 1.0];
  // dds: diffusion model + classifier; noisy (Cohen et al.): models/<dataset>/classifier-noise<sigma> when present, else the
  // plain classifier. Missing weights fail here with the command that trains them; each worker thread loads its own.
  const bases: Record<string, import('../../certify/load.js').BaseSpec> = {};
  for (const kind of (f.base ?? 'dds').split(',')) {
    if (!(BASE_KINDS as readonly string[]).includes(kind)) throw new UsageError(`unknown --base ${kind} (${BASE_KINDS.join(', ')})`);
    bases[kind] = { kind: kind as (typeof BASE_KINDS)[number], dataset };
    for (const sigma of sigmas) {
      const { note } = baseModels(bases[kind], sigma);
      if (note) process.stderr.write(`certify: ${note}\n`);
    }
  }
  if (f.split === 'fixture' && dataset !== 'fashion-mnist') throw new UsageError('--split fixture holds Fashion-MNIST test images; use it with --dataset fashion-mnist');
  const ds = f.split === 'fixture' ? loadFixture() : loadDataset(dataset, (f.split as 'test') ?? 'test');
  const n = num(f.n, 'n') ?? 10000;
  const alpha = num(f.alpha, 'alpha') ?? 0.001;
  const workers = num(f.workers, 'workers') ?? defaultWorkers();
  const maxRadii = sigmas.map((s) => `${maxCertifiableRadius(s, n, alpha).toFixed(2)} at sigma ${s}`).join(', ');
  process.stderr.write(`certify: ${workers} worker thread${workers === 1 ? '' : 's'}; n = ${n} and alpha = ${alpha} can certify radii up to ${maxRadii}\n`);
  const outDir = f.out ?? join('runs', dataset, 'certify');
  let lastLine = 0;
  const r = await runCertify({
    dataset: ds, sigmas, bases, n0: num(f.n0, 'n0') ?? 100, n, alpha, workers,
    count: num(f.count, 'count') ?? 100, skip: num(f.skip, 'skip') ?? 1, indices: indexList(f.indices, 'indices'),
    batchSize: num(f['batch-size'], 'batch-size') ?? 500,
    seed: num(f.seed, 'seed'), outDir,
    onProgress: (p) => {
      if (Date.now() - lastLine > 10000 || p.done === p.total) {
        lastLine = Date.now();
        process.stderr.write(`certify ${p.base} sigma=${p.sigma}: ${p.done}/${p.total}\n`);
      }
    },
  });
  process.stdout.write(f.json ? `${JSON.stringify(r.report)}\n` : readFileSync(r.files.markdown, 'utf8'));
};

const bench: Command = async (pos, f) => {
  if (pos[0] === 'robustness') return (await import('../../attacks/bench/cli.js')).benchRobustness(f);
  if (pos[0] === 'patch') return (await import('../purify/patch/bench.js')).benchPatchCli(f);
  if (pos[0] === 'corruptions') return benchCorruptionsCli(f);
  if (pos[0] !== 'perf' && pos[0] !== undefined) throw new UsageError('usage: advpurify bench perf|robustness|patch|corruptions');
  const { runPerfBench } = await import('../bench/perf.js');
  await runPerfBench();
};

/** `advpurify bench corruptions [--split test|val|fixture --count N --degradations a,b --severities 1,3 --preprocessors raw,restore,...
 *  --variant classifier-restore --restore-t-star N --restore-steps K --cold-steps K --out DIR --seed S --json]`. */
async function benchCorruptionsCli(f: Flags): Promise<number> {
  const { benchCorruptions } = await import('../bench/corruptions.js');
  const list = (v: string | undefined) => v?.split(',').map((s) => s.trim()).filter(Boolean);
  try {
    const r = await benchCorruptions({
      dataset: datasetOf(f), split: f.split, count: num(f.count, 'count'), degradations: list(f.degradations), severities: numList(f.severities, 'severities'),
      preprocessors: list(f.preprocessors), model: f.model, classifier: f.variant, out: f.out,
      restoreTStar: num(f['restore-t-star'], 'restore-t-star'), restoreSteps: num(f['restore-steps'], 'restore-steps'), coldSteps: num(f['cold-steps'], 'cold-steps'), chunk: num(f.chunk, 'chunk'), seed: num(f.seed, 'seed'),
    });
    process.stdout.write(f.json ? `${JSON.stringify({ files: r.files, cells: r.cells })}\n` : r.markdown);
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  return 0;
}

const serve: Command = async (_pos, f) => {
  const { startServer } = await import('../server/index.js');
  const port = num(f.port, 'port') ?? (process.env.PORT ? Number(process.env.PORT) : 3000);
  const s = await startServer({ port, host: f.host, model: f.model, workers: num(f.workers, "workers"), handleSignals: true });
  process.stderr.write(`advpurify: serving on ${s.url}\n`);
  await new Promise(() => {});
};

export const COMMANDS: Record<string, Command> = { purify, classify, eval: evalCmd, train, certify, bench, serve };
