/**
 * Train the blind restoration model (`advpurify train restore`): fine-tune a copy of the shipped
 * diffusion U-Net (models/<dataset>/diffusion) on random degradation sequences at random severities,
 * mixed in every batch with the ordinary Gaussian diffusion loss, and train the level net beside it.
 * Adam with warm-up and per-network gradient clipping, EMA weights (what ships), one rolling checkpoint
 * written every `checkpointEvery` steps and at the end; resumes from it, including data order.
 *
 * Conditioning (src/diffusion/restoration.ts): the U-Net's time input is the level of its input, the
 * noise-equivalent RMS of (input - clean image). Gaussian-noised rows are ordinary DDPM samples; a
 * degraded image y is presented at the step whose sigma_t matches rms(y - x0), with target
 * (y - x0) / sigma_t. One loss, one network: diffpure and oneshot keep working, and both restoration
 * designs, (a) cold-diffusion steps from the predicted level and (b) one x0 prediction then a short
 * diffpure pass, run on the same weights. Every `validateEvery` steps both are measured on a fixed
 * degraded sample of the validation split (carved from the training data) and logged; the numbers are
 * kept in the weights' metadata (`restore.validation`). `advpurify bench corruptions --split val`
 * compares them in full.
 *
 * A batch: the first (1 - restoreFraction) B rows are diffusion samples (t as in train/diffusion.ts);
 * the rest come in groups of `group` images, each group degraded by its own random sequence of 1..maxLength
 * degradations (every one in src/degradations that fits the channels, the real JPEG codec included)
 * at random severities, or left clean (`cleanFraction`); `interpolateFraction` of the degraded images are
 * moved part-way back to the clean one (x0 + u (y - x0), u ~ U(0, 1)): the states design (a) passes through.
 * Degradation seeds are even; the corruption benchmark's are odd, so the two never share a draw.
 */
import { tf, type Tensor1D, type Tensor4D } from '../backend/index.js';
import { imageSize, loadDataset, subset, type Dataset, type DatasetName } from '../data/index.js';
import { GaussianDiffusion, type EpsModel } from '../diffusion/gaussian-diffusion.js';
import { LEVEL_FLOOR, levelSteps, residualLevels, restorationPair } from '../diffusion/restoration.js';
import { degradationsFor, randomSequence, type DegradationName } from '../degradations/index.js';
import { DiffusionModel } from '../models/diffusion-model.js';
import { diffusionLr } from './diffusion.js';
import { DEFAULT_LEVEL_NET, initLevelNet, LEVEL_PREFIX, levelNetForward, type LevelNetConfig } from '../models/level-net.js';
import type { RestoreInfo, RestoreMeta } from '../models/restore-model.js';
import { DEFAULT_UNET, initUNet, unetForward, type Params, type UNetConfig } from '../models/unet.js';
import { loadWeights, saveWeights } from '../models/weights.js';
import { Purifier } from '../purify/purifier.js';
import { psnrPerImage } from '../bench/similarity.js';
import { mulberry32, permutation, type Rng } from '../util/rng.js';
import { fmtLoss, Progress } from '../util/progress.js';
import { yieldToEventLoop } from '../util/yield.js';
import { mirrorKeepsClass, stepBatch } from './augment.js';
import { checkpointExists, clipByGlobalNorm, emaUpdate, loadCheckpoint, restoreNetAndEma, saveCheckpoint } from './checkpoint.js';

/** How a batch is made (see the header); every field has a default. */
export interface RestoreBatchOptions {
  restoreFraction?: number; // default 0.5
  group?: number; // images per degradation sequence, default 4
  maxLength?: number; // sequence length 1..maxLength, default 3
  cleanFraction?: number; // default 0.1 of the groups
  interpolateFraction?: number; // default 0.3 of the degraded images
  lowTFraction?: number; // diffusion rows, as train/diffusion.ts: default 0.7
  tLowMax?: number; // default 400
  names?: readonly DegradationName[]; // default: every degradation that fits the channels
}

export interface TrainRestoreOptions extends RestoreBatchOptions {
  dataset: DatasetName;
  out: string; // weights path prefix, e.g. models/fashion-mnist/restore
  checkpoint: string; // e.g. runs/fashion-mnist/restore.ckpt
  /** Diffusion weights to fine-tune (default models/<dataset>/diffusion), or 'random' (a fresh U-Net of `unet`). */
  init: string;
  steps: number; // total optimizer steps
  batchSize: number;
  lr: number;
  seed: number;
  emaDecay?: number; // default 0.999
  warmup?: number; // lr warm-up steps, default 200
  /** Cosine decay of the learning rate to 0 from this step to `steps` (default: none, constant after warm-up). */
  decayFrom?: number;
  checkpointEvery?: number; // default 100
  validateEvery?: number; // default 500; 0 = never
  validateCount?: number; // validation images, default 64
  unet?: UNetConfig; // only with init 'random'
  level?: LevelNetConfig;
  /** Training images (default: the dataset's train split); validation images (default: its val split). */
  train?: Dataset;
  val?: Dataset;
  log?: (line: string) => void;
}

/** A training batch. Pixel scale; rows 0..nDiff-1 are diffusion samples, the others restoration samples. */
export interface RestoreBatch {
  shape: [number, number, number, number];
  nDiff: number;
  x0: Float32Array; // all rows, clean
  y: Float32Array; // restoration rows, degraded (and maybe interpolated)
  tDiff: Int32Array; // diffusion rows: t
  tRestore: Int32Array; // restoration rows: the step of their level
  logLevel: Float32Array; // restoration rows: log of the level (level-net target)
  noiseSeed: number;
}

/** Build a batch from clean images x0 ([B,H,W,C] pixels, flat), deterministically from rng. */
export async function restoreBatch(d: GaussianDiffusion, x0: Float32Array, shape: [number, number, number, number], rng: Rng, o: RestoreBatchOptions = {}): Promise<RestoreBatch> {
  const [B, h, w, c] = shape;
  const size = h * w * c;
  const nRestore = Math.round(B * (o.restoreFraction ?? 0.5));
  const nDiff = B - nRestore;
  const lowFrac = o.lowTFraction ?? 0.7;
  const tLowMax = o.tLowMax ?? 400;
  const tDiff = Int32Array.from({ length: nDiff }, () => 1 + Math.floor(rng() * (rng() < lowFrac ? tLowMax : d.T)));
  const pool = [...(o.names ?? degradationsFor(c))];
  const group = Math.max(1, o.group ?? 4);
  const y = x0.slice(nDiff * size);
  for (let g = 0; g < nRestore; g += group) {
    const n = Math.min(group, nRestore - g);
    const clean = rng() < (o.cleanFraction ?? 0.1);
    const length = 1 + Math.floor(rng() * (o.maxLength ?? 3));
    const seed = 2 * Math.floor(rng() * 2 ** 30); // even: the benchmark's are odd
    if (clean) continue;
    const part = y.subarray(g * size, (g + n) * size);
    const xg = tf.tensor4d(part, [n, h, w, c]);
    const r = await randomSequence({ length: Math.min(length, pool.length), seed, names: pool }).apply(xg);
    part.set(r.y.dataSync());
    tf.dispose([xg, r.y]);
  }
  const interp = o.interpolateFraction ?? 0.3;
  for (let i = 0; i < nRestore; i++) {
    if (rng() >= interp) continue;
    const u = rng();
    const off = (nDiff + i) * size;
    for (let j = 0; j < size; j++) y[i * size + j] = x0[off + j] + u * (y[i * size + j] - x0[off + j]);
  }
  const levels = residualLevels(y, x0.subarray(nDiff * size), nRestore);
  return {
    shape, nDiff, x0, y, tDiff,
    tRestore: levelSteps(d, levels),
    logLevel: Float32Array.from(levels, (s) => Math.log(Math.max(s, LEVEL_FLOOR))),
    noiseSeed: Math.floor(rng() * 2 ** 31),
  };
}

/** The U-Net's loss on a batch: epsilon MSE over diffusion and restoration rows together. */
export function unetLoss(d: GaussianDiffusion, eps: EpsModel, b: RestoreBatch): tf.Scalar {
  return tf.tidy(() => {
    const [B, h, w, c] = b.shape;
    const nR = B - b.nDiff;
    const x0 = tf.tensor4d(b.x0, b.shape).mul(2).sub(1) as Tensor4D;
    const parts: { x: Tensor4D; target: Tensor4D }[] = [];
    if (b.nDiff > 0) {
      const noise = tf.randomNormal([b.nDiff, h, w, c], 0, 1, 'float32', b.noiseSeed) as Tensor4D;
      parts.push({ x: d.qSample(x0.slice(0, b.nDiff) as Tensor4D, b.tDiff, noise), target: noise });
    }
    if (nR > 0) {
      const y = tf.tensor4d(b.y, [nR, h, w, c]).mul(2).sub(1) as Tensor4D;
      const { xIn, eps: target } = restorationPair(d, y, x0.slice(b.nDiff) as Tensor4D, b.tRestore);
      parts.push({ x: xIn, target });
    }
    const t = tf.tensor1d(Int32Array.from([...b.tDiff, ...b.tRestore]), 'float32');
    const pred = eps(tf.concat(parts.map((p) => p.x)) as Tensor4D, t);
    return pred.sub(tf.concat(parts.map((p) => p.target))).square().mean() as tf.Scalar;
  });
}

/** The level net's loss on a batch's restoration rows: MSE of log sigma. */
export function levelLoss(level: (yModel: Tensor4D) => Tensor1D, b: RestoreBatch): tf.Scalar {
  return tf.tidy(() => {
    const [B, h, w, c] = b.shape;
    const y = tf.tensor4d(b.y, [B - b.nDiff, h, w, c]).mul(2).sub(1) as Tensor4D;
    return level(y).sub(tf.tensor1d(b.logLevel)).square().mean() as tf.Scalar;
  });
}

/** A fixed degraded sample of the validation split: clean x0 and degraded y, pixel scale. */
async function validationSet(val: Dataset, count: number, seed: number, o: RestoreBatchOptions): Promise<{ x0: Tensor4D; y: Tensor4D }> {
  const ds = subset(val, Array.from(permutation(val.count, seed).subarray(0, Math.min(count, val.count))));
  const shape: [number, number, number, number] = [ds.count, ...ds.shape];
  const b = await restoreBatch(new GaussianDiffusion(), ds.images, shape, mulberry32(seed), { ...o, restoreFraction: 1, cleanFraction: 0, interpolateFraction: 0 });
  return { x0: tf.tensor4d(ds.images, shape), y: tf.tensor4d(b.y, shape) };
}

/** Mean PSNR (dB) to the clean images: of the degraded input, of design (a) 'cold', of design (b) 'x0'. */
export function validateDesigns(model: DiffusionModel, v: { x0: Tensor4D; y: Tensor4D }, seed = 1): { input: number; cold: number; x0: number } {
  const mean = (a: Float32Array) => a.reduce((s, x) => s + x, 0) / a.length;
  const score = (restorer: 'cold' | 'x0') => {
    const out = new Purifier(model, { mode: 'restore', restorer, seed, validate: false }).purify(v.y);
    const p = mean(psnrPerImage(out, v.x0));
    out.dispose();
    return p;
  };
  return { input: mean(psnrPerImage(v.y, v.x0)), cold: score('cold'), x0: score('x0') };
}

export async function trainRestore(o: TrainRestoreOptions): Promise<{ step: number; lossAvg: number; levelLossAvg: number; validation: RestoreInfo['validation'] }> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const d = new GaussianDiffusion(1000);
  const train = o.train ?? loadDataset(o.dataset, 'train');
  const [h, w, c] = train.shape;
  // initial weights: the shipped diffusion U-Net (its level net too, if it is already a restoration model)
  let init: Params;
  let cfg: UNetConfig;
  let levelCfg: LevelNetConfig = o.level ?? { ...DEFAULT_LEVEL_NET, imageChannels: c };
  if (o.init === 'random') {
    cfg = o.unet ?? DEFAULT_UNET;
    init = initUNet(cfg, o.seed);
  } else {
    const wts = loadWeights<Partial<RestoreMeta>>(o.init);
    cfg = wts.meta.unet ?? DEFAULT_UNET;
    levelCfg = wts.meta.restore?.level ?? levelCfg;
    init = wts.tensors;
  }
  if (!Object.keys(init).some((k) => k.startsWith(LEVEL_PREFIX))) Object.assign(init, initLevelNet(levelCfg, o.seed + 17));
  const vars: Record<string, tf.Variable> = {};
  for (const [k, v] of Object.entries(init)) vars[k] = tf.variable(v, true); // engine-unique names: two runs may share a process
  let ema: Params = {};
  for (const [k, v] of Object.entries(init)) ema[k] = v.clone();
  tf.dispose(Object.values(init));
  const unetVars = Object.entries(vars).filter(([k]) => !k.startsWith(LEVEL_PREFIX)).map(([, v]) => v);
  const levelVars = Object.entries(vars).filter(([k]) => k.startsWith(LEVEL_PREFIX)).map(([, v]) => v);
  const opt = tf.train.adam(o.lr, 0.9, 0.999);
  let step = 0;
  let lossAvg = NaN;
  let levelLossAvg = NaN;
  let validation: NonNullable<RestoreInfo['validation']> = [];
  if (checkpointExists(o.checkpoint)) {
    const ck = await loadCheckpoint(o.checkpoint, opt);
    restoreNetAndEma(ck.model, vars, ema);
    step = ck.state.step;
    lossAvg = (ck.state.lossAvg as number) ?? NaN;
    levelLossAvg = (ck.state.levelLossAvg as number) ?? NaN;
    validation = (ck.state.validation as typeof validation) ?? [];
    log(`resumed ${o.checkpoint} at step ${step}`);
  }
  const meta = (): RestoreMeta => ({
    kind: 'ddpm-unet', dataset: o.dataset, T: d.T, schedule: 'cosine', unet: cfg,
    restore: { level: levelCfg, levelFloor: LEVEL_FLOOR, validation },
    trainedSteps: step, batchSize: o.batchSize, lossAvg, levelLossAvg,
    trainedWith: { ...o, log: undefined, train: o.train?.name, val: o.val?.name },
  });
  const B = o.batchSize;
  const size = imageSize(train);
  const perEpoch = Math.max(1, Math.floor(train.count / B));
  const every = o.checkpointEvery ?? 100;
  const validateEvery = o.validateEvery ?? 500;
  const decay = o.emaDecay ?? 0.999;
  const warmup = o.warmup ?? 200;
  const unetParams = (p: Params) => (x: Tensor4D, t: Tensor1D) => unetForward(p, cfg, x, t);
  const levelOf = (p: Params) => (y: Tensor4D) => levelNetForward(p, y);
  let valSet: { x0: Tensor4D; y: Tensor4D } | undefined;
  const validate = async () => {
    valSet ??= await validationSet(o.val ?? loadDataset(o.dataset, 'val'), o.validateCount ?? 64, 20261128, o);
    const r = validateDesigns(new DiffusionModel(ema, meta()), valSet);
    validation.push({ step, ...r });
    log(`step ${step}: validation PSNR input ${r.input.toFixed(2)} dB, (a) cold ${r.cold.toFixed(2)} dB, (b) x0+diffpure ${r.x0.toFixed(2)} dB`);
  };
  const save = async () => {
    const model: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(vars)) model[`net/${k}`] = v;
    for (const [k, v] of Object.entries(ema)) model[`ema/${k}`] = v;
    await saveCheckpoint(o.checkpoint, model, opt, { epoch: Math.floor(step / perEpoch), step, seed: o.seed, lossAvg, levelLossAvg, validation });
    saveWeights(o.out, ema, meta(), { float16: true });
  };
  const bar = new Progress(o.steps - step, 'restore');
  const startStep = step;
  const xb = new Float32Array(B * size);
  const mirror = mirrorKeepsClass(o.dataset);
  while (step < o.steps) {
    const rng = stepBatch(train, step, o.seed, xb, { maxShift: 0, flip: mirror });
    await yieldToEventLoop(); // a long run stays responsive (signals, progress, test runners' RPC)
    const batch = await restoreBatch(d, xb, [B, h, w, c], rng, o);
    (opt as unknown as { learningRate: number }).learningRate = diffusionLr(o, step, warmup);
    const [lossU, lossL] = tf.tidy(() => {
      const u = tf.variableGrads(() => unetLoss(d, unetParams(vars), batch), unetVars);
      const l = tf.variableGrads(() => levelLoss(levelOf(vars), batch), levelVars);
      // one applyGradients call (Adam's slots are matched by position), each network clipped on its own
      opt.applyGradients({ ...clipByGlobalNorm(u.grads), ...clipByGlobalNorm(l.grads) } as unknown as Parameters<typeof opt.applyGradients>[0]);
      return [u.value, l.value];
    });
    step++;
    ema = emaUpdate(ema, vars, step, decay);
    if (step % 10 === 0 || step === o.steps || step - startStep <= 10) {
      const [a, b] = [lossU.dataSync()[0], lossL.dataSync()[0]];
      lossAvg = Number.isNaN(lossAvg) ? a : 0.95 * lossAvg + 0.05 * a;
      levelLossAvg = Number.isNaN(levelLossAvg) ? b : 0.95 * levelLossAvg + 0.05 * b;
    }
    tf.dispose([lossU, lossL]);
    bar.update(step - startStep, `step ${step} loss ${fmtLoss(lossAvg, 4)} level ${fmtLoss(levelLossAvg, 3)}`);
    if (validateEvery > 0 && (step % validateEvery === 0 || step === o.steps)) await validate();
    if (step % every === 0 || step === o.steps) {
      await save();
      log(`step ${step}: loss(ema) ${fmtLoss(lossAvg, 4)}, level ${fmtLoss(levelLossAvg, 3)}; checkpoint ${o.checkpoint}, weights ${o.out}`);
    }
  }
  bar.done();
  if (valSet) tf.dispose([valSet.x0, valSet.y]);
  tf.dispose(Object.values(vars));
  tf.dispose(Object.values(ema));
  opt.dispose();
  return { step, lossAvg, levelLossAvg, validation };
}
