/**
 * Fine-tune the diffusion model as the denoiser of denoised smoothing at one noise level (`advpurify train
 * denoiser`). Salman et al. 2020 ("Denoised Smoothing") train the denoiser in front of a fixed classifier with
 * a classification objective instead of the pixel MSE; Carlini et al. 2023 use the diffusion model's one-shot
 * x0 prediction as that denoiser. This does the first to the second: a copy of the U-Net is trained through
 * exactly the computation the dds certification base runs (certify/bases.ts `denoisedBase`: x + N(0, sigma^2),
 * scaled to the step t whose noise level matches sigma, one x0 prediction, clipped, then the frozen classifier),
 * with Jeong & Shin's consistency loss over `draws` noisy copies of each image (cross-entropy + lambda * KL to
 * the copies' mean prediction + eta * its entropy; the same loss the dds-cons classifiers were trained with) and
 * optionally `mse` times the pixel MSE of x0 against the clean image. The classifier is not changed.
 *
 * The weights only serve that one step t: the file is a full diffusion model (same format, same network), but
 * diffpure and other noise levels should keep the shipped one. Every `validateEvery` steps the smoothed
 * classifier's validation ACR (train/classifier.ts `smoothedValidation`: 100 draws per image, fixed seeds, on the
 * validation split carved from the training data) is measured, step 0 included, and the best weights so far are
 * written to `out`; one rolling checkpoint (weights, Adam state, loop state) resumes an interrupted run, data order
 * and noise draws included.
 *
 * A smaller denoiser (`studentCh`): a fresh U-Net of that base width (the init model's shape otherwise) trained to
 * reproduce the init model's one-shot x0 at this step (`distill` times the model-scale MSE between the two x0 on the
 * same noisy input; Hinton-style distillation with the diffusion model as the teacher), optionally with the
 * classification term (`cls`, default 1; 0 for pure distillation). It keeps what the classifiers fine-tuned on the
 * teacher's denoisings were trained on, at a fraction of the cost: a certification sample costs one U-Net pass and
 * one classifier pass, and the U-Net's cost grows with the square of its width.
 */
import { tf, type Tensor1D, type Tensor4D } from '../backend/index.js';
import { imageSize, loadDataset, take, type Dataset, type DatasetName } from '../data/index.js';
import { oneShotDenoiser } from '../../certify/bases.js';
import { DiffusionModel, type DiffusionMeta } from '../models/diffusion-model.js';
import { DEFAULT_UNET, initUNet, studentConfig, type Params, type UNetConfig } from '../models/unet.js';
import { classifierFromWeights, ModelNotFoundError } from '../models/classifier.js';
import { loadWeights, saveWeights, weightsExist, weightsFingerprint } from '../models/weights.js';
import { fmtLoss, Progress } from '../util/progress.js';
import { yieldToEventLoop } from '../util/yield.js';
import { mirrorKeepsClass, stepBatch } from './augment.js';
import { checkpointExists, clipByGlobalNorm, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { consistencyLoss, smoothedValidation } from './classifier.js';

export interface TrainDenoiserOptions {
  dataset: DatasetName;
  /** diffusion weights to start from (path without suffix), e.g. models/fashion-mnist/diffusion */
  init: string;
  /** the frozen classifier behind the denoiser (path without suffix), e.g. a dds-cons classifier of this sigma */
  classifier: string;
  /** pixel-scale noise level ([0, 1] images) of the smoothing */
  sigma: number;
  out: string; // weights path without suffix
  checkpoint: string;
  steps: number; // optimizer steps
  /** images per step (default 32); each gets `draws` noise draws */
  batchSize?: number;
  draws?: number; // default 2
  lambda?: number; // consistency weight, default 5
  eta?: number; // entropy weight, default 0.5
  mse?: number; // weight of the x0 pixel MSE (model scale), default 0
  /** train a fresh U-Net of this base width (the init model's shape otherwise) instead of fine-tuning a copy; its
   *  rate decays on a cosine from `lr` to 0 over `steps` */
  studentCh?: number;
  /** weight of the MSE (model scale) between this network's x0 and the frozen init model's on the same input; default 0 */
  distill?: number;
  /** weight of the classification (consistency) term, default 1; 0 trains without the classifier's gradient */
  cls?: number;
  lr?: number; // Adam, constant after a 50-step warm-up; default 2e-5
  seed: number;
  checkpointEvery?: number; // default 50
  validateEvery?: number; // default 500; 0: never (the last weights are written)
  acrValCount?: number; // validation images for the ACR, default 500
  train?: Dataset; // default: the data set's train split
  val?: Dataset; // default: its val split
  log?: (line: string) => void;
}

export type TrainDenoiserResult = {
  step: number;
  /** validation ACR of the classifier behind the denoiser it started from (step 0) and of the weights written */
  initialAcr?: number;
  bestAcr?: number;
  bestStep?: number;
  lossAvg: number;
};

export async function trainDenoiser(o: TrainDenoiserOptions): Promise<TrainDenoiserResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  if (!(o.sigma > 0 && o.sigma <= 2)) throw new RangeError(`sigma must be in (0, 2], got ${o.sigma}`);
  const B = o.batchSize ?? 32;
  const draws = o.draws ?? 2;
  const lambda = o.lambda ?? 5;
  const eta = o.eta ?? 0.5;
  const mse = o.mse ?? 0;
  const distill = o.distill ?? 0;
  const cls = o.cls ?? 1;
  const lr = o.lr ?? 2e-5;
  const every = o.checkpointEvery ?? 50;
  const validateEvery = o.validateEvery ?? 500;
  if (!(Number.isInteger(B) && B >= 1)) throw new RangeError(`batchSize must be a positive integer, got ${B}`);
  if (!(Number.isInteger(draws) && draws >= 2)) throw new RangeError(`draws must be an integer >= 2, got ${draws}`);
  if (!(lambda >= 0 && eta >= 0 && mse >= 0 && distill >= 0 && cls >= 0)) throw new RangeError('lambda, eta, mse, distill and cls must be >= 0');
  if (!(cls > 0 || mse > 0 || distill > 0)) throw new RangeError('nothing to train on: cls, mse and distill are all 0');
  if (o.studentCh !== undefined && !(Number.isInteger(o.studentCh) && o.studentCh >= 4 && o.studentCh <= 256)) throw new RangeError(`studentCh must be an integer in [4, 256], got ${o.studentCh}`);
  if (!(Number.isInteger(o.steps) && o.steps >= 0)) throw new RangeError(`steps must be an integer >= 0, got ${o.steps}`);
  const train = o.train ?? loadDataset(o.dataset, 'train');
  const val = take(o.val ?? loadDataset(o.dataset, 'val'), Math.max(0, o.acrValCount ?? 500));
  if (train.count < B) throw new RangeError(`${train.count} training images are fewer than a batch of ${B}`);

  for (const [what, path] of [['diffusion', o.init], ['classifier', o.classifier]]) {
    if (!weightsExist(path)) throw new ModelNotFoundError(`no ${what} weights at ${path}.json/.bin`);
  }
  const { meta: stored, tensors } = loadWeights<DiffusionMeta>(o.init);
  const initMeta: DiffusionMeta = { ...stored, unet: stored.unet ?? DEFAULT_UNET };
  if (initMeta.kind !== 'ddpm-unet' || initMeta.dataset !== o.dataset) throw new Error(`--init ${o.init} is not a ${o.dataset} diffusion model`);
  if ((initMeta as { restore?: unknown }).restore) throw new Error(`--init ${o.init} is a restoration model; start from the diffusion model`);
  // the network trained: a copy of the init model, or a fresh student of another width
  const unet: UNetConfig = o.studentCh === undefined ? initMeta.unet : studentConfig(initMeta.unet, o.studentCh);
  const netMeta: DiffusionMeta = { ...initMeta, unet };
  const initial = o.studentCh === undefined ? tensors : initUNet(unet, o.seed);
  const vars: Record<string, tf.Variable> = {};
  for (const [k, v] of Object.entries(initial)) vars[k] = tf.variable(v, true, `denoiser/${k}`);
  if (initial !== tensors) tf.dispose(Object.values(initial));
  // the frozen init model, kept only to distill from
  const teacher = distill > 0 ? new DiffusionModel(tensors as Params, initMeta) : undefined;
  if (!teacher) tf.dispose(Object.values(tensors));
  const dm = new DiffusionModel(vars as Params, netMeta); // its eps reads the variables as they train (not disposed: the variables are)
  const clf = classifierFromWeights(o.classifier, 'denoiser-classifier');
  if (clf.meta.dataset !== o.dataset) {
    clf.dispose();
    tf.dispose(Object.values(vars));
    teacher?.dispose();
    throw new Error(`--classifier ${o.classifier} is a ${clf.meta.dataset} classifier, not ${o.dataset}`);
  }
  const opt = tf.train.adam(lr, 0.9, 0.999);
  try {
    const denoiser = oneShotDenoiser(dm.diffusion, dm.eps, { sigma: o.sigma, seed: 1 });
    const tStar = denoiser.tStar;
    const teacherDenoiser = teacher && oneShotDenoiser(teacher.diffusion, teacher.eps, { sigma: o.sigma, seed: 1 });
    const smoothed = { predict: (x: Tensor4D) => tf.tidy(() => clf.predict(denoiser(x))) };
    const validate = () => smoothedValidation(smoothed, val, o.sigma, val.count);

    let step = 0;
    let lossAvg = NaN;
    let best = -1;
    let bestStep: number | undefined;
    let initialAcr: number | undefined;
    if (checkpointExists(o.checkpoint)) {
      const ck = await loadCheckpoint(o.checkpoint, opt);
      for (const [k, v] of Object.entries(vars)) v.assign(ck.model[`net/${k}`]);
      tf.dispose(Object.values(ck.model));
      step = ck.state.step;
      best = (ck.state.bestAcr as number | undefined) ?? -1;
      bestStep = ck.state.bestStep as number | undefined;
      initialAcr = ck.state.initialAcr as number | undefined;
      if (typeof ck.state.lossAvg === 'number') lossAvg = ck.state.lossAvg;
      log(`resumed ${o.checkpoint} at step ${step} (best validation ACR ${best >= 0 ? best.toFixed(3) : '-'})`);
    }
    const settings = {
      sigma: o.sigma, tStar, batchSize: B, draws, lambda, eta, mse, lr, seed: o.seed,
      ...(o.studentCh !== undefined ? { studentCh: o.studentCh, unet } : {}), ...(distill > 0 ? { distill } : {}), ...(cls !== 1 ? { cls } : {}),
      init: weightsFingerprint(o.init), classifier: weightsFingerprint(o.classifier), classifierPath: o.classifier,
    };
    // (`last`: no validation in this run, the weights of its last step; else the best by validation ACR, now)
    const save = (last = false) => saveWeights(o.out, vars as Params, {
      ...netMeta,
      denoiser: { ...settings, step, ...(last ? { selected: 'last step' } : { selected: 'validation ACR', initialAcr, valAcr: best, valImages: val.count }) },
    }, { float16: true });
    const checkpoint = () => saveCheckpoint(o.checkpoint, Object.fromEntries(Object.entries(vars).map(([k, v]) => [`net/${k}`, v])), opt,
      { epoch: 0, step, seed: o.seed, lossAvg, bestAcr: best, bestStep, initialAcr });
    const check = async () => {
      const r = await validate();
      if (step === 0) initialAcr = r.acr;
      const better = r.acr > best;
      if (better) {
        best = r.acr;
        bestStep = step;
        save();
      }
      log(`step ${step}: validation ACR ${r.acr.toFixed(3)}, certified ${(100 * r.certified).toFixed(1)}% (${val.count} images, 100 draws)${better ? `; saved ${o.out}` : ''}`);
    };
    // (step 0 scores the weights training starts from; a student's are random, not worth a validation pass)
    if (validateEvery > 0 && step === 0 && val.count > 0 && o.studentCh === undefined) await check();

    const size = imageSize(train);
    const [h, w, c] = train.shape;
    const mirror = mirrorKeepsClass(o.dataset);
    const xb = new Float32Array(B * size);
    const yb = new Int32Array(B);
    const bar = new Progress(Math.max(1, o.steps - step), `denoiser sigma ${o.sigma}`);
    const start = step;
    while (step < o.steps) {
      const rng = stepBatch(train, step, o.seed, xb, { maxShift: 2, flip: mirror }, yb);
      await yieldToEventLoop(); // a long run stays responsive (signals, progress, test runners' RPC)
      const noiseSeed = Math.floor(rng() * 2 ** 31);
      // (a student, trained from scratch, decays its rate on a cosine over the run; a fine-tuned copy keeps it)
      const decay = o.studentCh === undefined ? 1 : 0.5 * (1 + Math.cos((Math.PI * step) / o.steps));
      (opt as unknown as { learningRate: number }).learningRate = lr * Math.min(1, (step + 1) / 50) * decay;
      const lossT = tf.tidy(() => {
        const x = tf.tile(tf.tensor4d(xb, [B, h, w, c]), [draws, 1, 1, 1]) as Tensor4D; // the draws as consecutive blocks
        const labels = tf.tensor1d(yb, 'int32') as Tensor1D;
        const noisy = x.add(tf.randomNormal(x.shape, 0, o.sigma, 'float32', noiseSeed)) as Tensor4D;
        const target = teacherDenoiser?.(noisy); // (outside the gradient: the teacher is frozen)
        const { value, grads } = tf.variableGrads(() => {
          const x0 = denoiser(noisy); // the certification base's own pass, [0, 1] pixels
          let l: tf.Scalar = cls > 0 ? consistencyLoss(clf.predict(x0), labels, draws, lambda, eta).mul(cls) : tf.scalar(0);
          // (mse and distill on the model's [-1, 1] scale: 4x the pixel MSE)
          if (mse > 0) l = l.add(x0.sub(x).square().mean().mul(4 * mse));
          if (target) l = l.add(x0.sub(target).square().mean().mul(4 * distill));
          return l;
        }, Object.values(vars));
        opt.applyGradients(clipByGlobalNorm(grads) as unknown as Parameters<typeof opt.applyGradients>[0]);
        return value;
      });
      step++;
      const l = lossT.dataSync()[0];
      lossT.dispose();
      if (!Number.isFinite(l)) throw new Error(`denoiser training diverged at step ${step} (loss ${l}); lower --lr`);
      lossAvg = Number.isNaN(lossAvg) ? l : 0.95 * lossAvg + 0.05 * l;
      bar.update(step - start, `step ${step} loss ${fmtLoss(lossAvg, 4)}`);
      const validateNow = validateEvery > 0 && val.count > 0 && (step % validateEvery === 0 || step === o.steps);
      if (validateNow) await check();
      if (validateNow || step % every === 0 || step === o.steps) await checkpoint();
    }
    bar.done();
    if (!(validateEvery > 0 && val.count > 0)) save(true); // nothing to select by: the last weights
    return { step, initialAcr, bestAcr: best >= 0 ? best : undefined, bestStep, lossAvg };
  } finally {
    clf.dispose();
    tf.dispose(Object.values(vars));
    teacher?.dispose();
    opt.dispose();
  }
}
