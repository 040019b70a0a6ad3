/**
 * Train the DDPM noise predictor (`advpurify train diffusion`): epsilon-MSE (Ho et al.), cosine
 * schedule, Adam with warm-up and gradient clipping, EMA weights (what ships). One rolling checkpoint,
 * written every `checkpointEvery` steps and at the end; resumes from it, including data order.
 *
 * Timestep sampling: with probability `lowTFraction` t is drawn from 1..tLowMax, else from 1..T.
 * Purification (t* ~ 0.1-0.3 T) and denoised smoothing (sigma <= 1, t <= ~700) only use the lower part
 * of the chain, so on a 2-core budget we spend most updates there; the full range is still trained.
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { imageSize, loadDataset, type DatasetName } from '../data/index.js';
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion.js';
import { DEFAULT_UNET, initUNet, unetForward, type Params, type UNetConfig } from '../models/unet.js';
import { saveDiffusion, type DiffusionMeta } from '../models/diffusion-model.js';
import { mulberry32, permutation } from '../util/rng.js';
import { fmtLoss, Progress } from '../util/progress.js';
import { augmentInto, mirrorKeepsClass } from './augment.js';
import { checkpointExists, clipByGlobalNorm, emaUpdate, loadCheckpoint, restoreNetAndEma, saveCheckpoint } from './checkpoint.js';

export interface TrainDiffusionOptions {
  dataset: DatasetName;
  out: string;
  checkpoint: string;
  steps: number; // total optimizer steps
  batchSize: number;
  lr: number;
  seed: number;
  emaDecay?: number;
  /**
   * Cosine decay of the learning rate to 0 from this step to `steps` (default: none, a constant rate after
   * the warm-up). Lets a run that has plateaued at the constant rate end with an annealing phase.
   */
  decayFrom?: number;
  unet?: UNetConfig;
  checkpointEvery?: number;
  lowTFraction?: number;
  tLowMax?: number;
  flip?: boolean; // horizontal-flip augmentation (default: on, except for MNIST digits)
  log?: (line: string) => void;
}

export async function trainDiffusion(o: TrainDiffusionOptions): Promise<void> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const cfg = o.unet ?? DEFAULT_UNET;
  const T = 1000;
  const diffusion = new GaussianDiffusion(T);
  const train = loadDataset(o.dataset, 'train');
  const init = initUNet(cfg, o.seed);
  const vars: Record<string, tf.Variable> = {};
  for (const [k, v] of Object.entries(init)) vars[k] = tf.variable(v, true, `unet/${k}`);
  let ema: Params = {};
  for (const [k, v] of Object.entries(init)) ema[k] = v.clone();
  tf.dispose(Object.values(init));
  const opt = tf.train.adam(o.lr, 0.9, 0.999);
  let step = 0;
  let lossAvg = NaN; // moving average of the loss, sampled every 10 steps (kept across a resume)
  if (checkpointExists(o.checkpoint)) {
    const ck = await loadCheckpoint(o.checkpoint, opt);
    restoreNetAndEma(ck.model, vars, ema);
    step = ck.state.step;
    if (typeof ck.state.lossAvg === 'number') lossAvg = ck.state.lossAvg;
    log(`resumed ${o.checkpoint} at step ${step}`);
  }
  const meta: DiffusionMeta = { kind: 'ddpm-unet', dataset: o.dataset, T, schedule: 'cosine', unet: cfg };
  const size = imageSize(train);
  const [h, w, c] = train.shape;
  const B = o.batchSize;
  const perEpoch = Math.floor(train.count / B);
  const every = o.checkpointEvery ?? 200;
  const lowFrac = o.lowTFraction ?? 0.7;
  const tLowMax = o.tLowMax ?? 400;
  const decay = o.emaDecay ?? 0.999;
  const bar = new Progress(o.steps - step, 'diffusion');
  const startStep = step;
  const xb = new Float32Array(B * size);
  const tb = new Int32Array(B);
  const save = async () => {
    const model: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(vars)) model[`net/${k}`] = v;
    for (const [k, v] of Object.entries(ema)) model[`ema/${k}`] = v;
    await saveCheckpoint(o.checkpoint, model, opt, { epoch: Math.floor(step / perEpoch), step, seed: o.seed, lossAvg });
    saveDiffusion(o.out, ema, { ...meta, trainedSteps: step, batchSize: B, lossAvg, trainedWith: { ...o, log: undefined } });
  };
  while (step < o.steps) {
    const epoch = Math.floor(step / perEpoch);
    const order = permutation(train.count, o.seed * 7919 + epoch);
    const rng = mulberry32(o.seed * 100003 + step);
    const s = step % perEpoch;
    for (let i = 0; i < B; i++) {
      const j = order[s * B + i];
      augmentInto(xb.subarray(i * size, (i + 1) * size), train.images.subarray(j * size, (j + 1) * size), h, w, c, rng, 0, o.flip ?? mirrorKeepsClass(o.dataset));
      tb[i] = 1 + Math.floor(rng() * (rng() < lowFrac ? tLowMax : T));
    }
    (opt as unknown as { learningRate: number }).learningRate = diffusionLr(o, step);
    const noiseSeed = Math.floor(rng() * 2 ** 31);
    const lossT = tf.tidy(() => {
      const x0 = tf.tensor4d(xb, [B, h, w, c]).mul(2).sub(1) as Tensor4D;
      const noise = tf.randomNormal([B, h, w, c], 0, 1, 'float32', noiseSeed) as Tensor4D;
      const { value, grads } = tf.variableGrads(
        () => diffusion.loss((xt, t) => unetForward(vars, cfg, xt, t), x0, tb, noise),
        Object.values(vars),
      );
      opt.applyGradients(clipByGlobalNorm(grads) as unknown as Parameters<typeof opt.applyGradients>[0]);
      return value;
    });
    step++;
    ema = emaUpdate(ema, vars, step, decay);
    if (step % 10 === 0 || step === o.steps) {
      const l = lossT.dataSync()[0];
      lossAvg = Number.isNaN(lossAvg) ? l : 0.95 * lossAvg + 0.05 * l;
    }
    lossT.dispose();
    bar.update(step - startStep, `step ${step} loss ${fmtLoss(lossAvg, 4)}`);
    if (step % every === 0 || step === o.steps) {
      await save();
      log(`step ${step}: loss(ema) ${fmtLoss(lossAvg, 4)}; checkpoint ${o.checkpoint}, weights ${o.out}`);
    }
  }
  bar.done();
  tf.dispose(Object.values(vars));
  tf.dispose(Object.values(ema));
  opt.dispose();
}

/**
 * The learning rate at `step` (0-based): linear warm-up over `warmup` steps (500 for the diffusion model), then
 * constant, then the optional cosine decay to 0 from `decayFrom` to `steps` (the restoration trainer too).
 */
export function diffusionLr(o: Pick<TrainDiffusionOptions, 'lr' | 'steps' | 'decayFrom'>, step: number, warmup = 500): number {
  const warm = Math.min(1, (step + 1) / warmup);
  const d = o.decayFrom;
  const decay = d !== undefined && step >= d && o.steps > d ? 0.5 * (1 + Math.cos((Math.PI * (step - d)) / (o.steps - d))) : 1;
  return o.lr * warm * decay;
}
