/**
 * `npm run bench` / `advpurify bench perf`: measured in one run on this machine:
 * purify images/s per mode at batch 1 and 64; the U-Net forward's achieved FLOP rate relative to
 * the same run's wasm Conv2D rate; training-step / forward-step time ratio; 2 worker threads vs 1.
 */
import { cpus } from 'node:os';
import { join } from 'node:path';
import { tf, initBackend, readTidy } from '../backend/index.js';
import { createPurifier, loadClassifier, type PurifyOptions } from '../purify/index.js';
import { initUNet, studentConfig, unetForward, unetMacsPerImage } from '../models/unet.js';
import { DiffusionModel, loadDiffusion } from '../models/diffusion-model.js';
import { weightsExist } from '../models/weights.js';
import { startWorker } from '../util/threads.js';
import { setNativeKernel } from '../backend/native.js';

/** Median time of one call, ms, over at least `minReps` calls and `minMs` (after a warm-up call):
 *  the median, not the mean, so that a shared VM's stray slow rep does not move the ratios. */
function timeIt(f: () => void, minMs = 1500, minReps = 5): number {
  f(); // warm-up
  const ts: number[] = [];
  const t0 = performance.now();
  while (ts.length < minReps || performance.now() - t0 < minMs) {
    const t = performance.now();
    f();
    ts.push(performance.now() - t);
  }
  ts.sort((a, b) => a - b);
  const m = ts.length >> 1;
  return ts.length % 2 ? ts[m] : (ts[m - 1] + ts[m]) / 2;
}

/** Median times (ms) of several calls, measured round-robin: f0, f1, ..., f0, f1, ... */
function interleaved(fs: (() => void)[], reps: number): number[] {
  for (const f of fs) f(); // warm-up
  const ts = fs.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    fs.forEach((f, i) => {
      const t = performance.now();
      f();
      ts[i].push(performance.now() - t);
    });
  }
  return ts.map((v) => v.sort((a, b) => a - b)[v.length >> 1]);
}

/** worker.js when compiled, worker.ts from source (see startWorker). */
const makeWorker = (workerData: unknown) => startWorker(new URL('./worker', import.meta.url), workerData);

async function threaded(n: number, batches: number, batchSize: number, options: PurifyOptions): Promise<number> {
  const ws = Array.from({ length: n }, () => makeWorker({ batches, batchSize, options }));
  await Promise.all(ws.map((w) => new Promise((r, j) => { w.once('message', r); w.once('error', j); })));
  const t0 = performance.now();
  const done = ws.map((w) => new Promise<number>((r, j) => { w.once('message', (m: { ms: number }) => r(m.ms)); w.once('error', j); }));
  ws.forEach((w) => w.postMessage('go'));
  await Promise.all(done);
  const wall = performance.now() - t0;
  await Promise.all(ws.map((w) => w.terminate()));
  return (n * batches * batchSize) / (wall / 1000);
}

export async function runPerfBench(): Promise<void> {
  const info = await initBackend();
  const rows: string[] = [];
  const line = (s: string) => { rows.push(s); process.stdout.write(`${s}\n`); };
  line(`# advpurify perf bench — ${new Date().toISOString().slice(0, 10)}, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, backend ${info.name}`);
  line('');
  line('| mode | options | batch | images/s | ms/batch |');
  line('|---|---|---|---|---|');
  const modes: [string, PurifyOptions][] = [
    ['diffpure', { mode: 'diffpure' }],
    ['diffpure-ddim', { mode: 'diffpure', sampler: 'ddim' }],
    ['oneshot', { mode: 'oneshot', sigma: 0.25 }],
    ['none', { mode: 'none' }],
  ];
  for (const [name, o] of modes) {
    const p = await createPurifier({ ...o, seed: 1 });
    for (const b of [1, 64]) {
      const x = tf.randomUniform([b, 28, 28, 1]) as tf.Tensor4D;
      const ms = timeIt(() => readTidy(() => p.purify(x)));
      x.dispose();
      line(`| ${name} | t*=${p.t} steps=${p.options.mode === 'diffpure' ? p.options.steps : p.options.mode === 'oneshot' ? 1 : 0} | ${b} | ${((1000 * b) / ms).toFixed(1)} | ${ms.toFixed(1)} |`);
    }
  }

  // FLOP rate: U-Net forward vs a plain wasm Conv2D of the network's most common shape
  const p = await createPurifier({ seed: 1 });
  const cfg = p.model.meta.unet;
  const B = 64;
  const x = tf.randomNormal([B, 28, 28, 1]) as tf.Tensor4D;
  const t = tf.fill([B], 100) as tf.Tensor1D;
  const cx = tf.randomNormal([B, 28, 28, cfg.ch]) as tf.Tensor4D;
  const cw = tf.randomNormal([3, 3, cfg.ch, cfg.ch]) as tf.Tensor4D;
  // training step vs forward on the same batch
  const vars = Object.fromEntries(Object.entries(p.model.params).map(([k, v]) => [k, tf.variable(v.clone(), true, `bench/${k}`)]));
  const opt = tf.train.adam(1e-4);
  const e = tf.randomNormal([B, 28, 28, 1]);
  // interleaved, so that a shared VM's drift over the minute this takes hits all three alike
  const step = () => {
    const l = opt.minimize(() => unetForward(vars, cfg, x, t).sub(e).square().mean() as tf.Scalar, true, Object.values(vars));
    l?.dataSync();
    l?.dispose();
  };
  // the last: the same step with the filter gradient composed from stock wasm kernels (before our SIMD kernel)
  const [fwdMs, convMs, stepMs, stepComposedMs] = interleaved([
    () => readTidy(() => unetForward(p.model.params, cfg, x, t)),
    () => readTidy(() => tf.conv2d(cx, cw, 1, 'same')),
    step,
    () => {
      const prev = setNativeKernel('filterGrad', false);
      try {
        step();
      } finally {
        setNativeKernel('filterGrad', prev);
      }
    },
  ], 7);
  const unetGflops = (2 * unetMacsPerImage(cfg) * B) / (fwdMs / 1000) / 1e9;
  const convGflops = (2 * B * 28 * 28 * 9 * cfg.ch * cfg.ch) / (convMs / 1000) / 1e9;
  tf.dispose([x, t, cx, cw, e, ...Object.values(vars)]);
  opt.dispose();

  // certification throughput: noise samples per second through each base classifier
  const { noisyBase, denoisedBase } = await import('../../certify/bases.js');
  const { Smooth } = await import('../../certify/core.js');
  const clf = await loadClassifier('fashion-mnist');
  const logits = (v: tf.Tensor4D) => clf.predict(v);
  const x1 = tf.randomUniform([1, 28, 28, 1]) as tf.Tensor4D;
  const certRate = async (base: import('../../certify/core.js').BaseClassifier, n: number) => {
    const smooth = new Smooth(base, 0.5, 10);
    await smooth.sampleNoise(x1, 100, 100, 1); // warm-up
    const t0 = performance.now();
    await smooth.sampleNoise(x1, n, 500, 2);
    return n / ((performance.now() - t0) / 1000);
  };
  const noisyRate = await certRate(noisyBase(logits), 5000);
  const ddsRate = await certRate(denoisedBase(p.model.diffusion, p.model.eps, logits, { sigma: 0.5 }), 1000);
  // the same on a denoiser of base width 12 distilled from the diffusion model (`train denoiser --student-ch 12
  // --distill 1`, lane `ddsstudent`): its trained weights when this checkout has them, else a network of that shape
  // (the speed does not depend on the values)
  const studentPath = join('runs', 'fashion-mnist', 'experiments', 'dds-student-ch12', 'diffusion-dds0.5');
  const trained = weightsExist(studentPath);
  const student = trained ? loadDiffusion(studentPath) : new DiffusionModel(initUNet(studentConfig(cfg, 12), 1), { ...p.model.meta, unet: studentConfig(cfg, 12) });
  const studentRate = await certRate(denoisedBase(student.diffusion, student.eps, logits, { sigma: 0.5 }), 2000);
  student.dispose();
  x1.dispose();
  clf.dispose();

  // worker threads
  const threadOpts: PurifyOptions = { mode: 'oneshot', sigma: 0.25 };
  // alternated 1, 2, 1, 2, 1, 2 threads, medians: a shared VM's speed drifts over the minute this takes
  const ones: number[] = [];
  const twos: number[] = [];
  for (let r = 0; r < 3; r++) {
    ones.push(await threaded(1, 10, 64, threadOpts));
    twos.push(await threaded(2, 10, 64, threadOpts));
  }
  const one = ones.sort((a, b) => a - b)[1];
  const two = twos.sort((a, b) => a - b)[1];

  line('');
  line('| measure | value | goal |');
  line('|---|---|---|');
  line(`| U-Net forward, batch ${B} | ${fwdMs.toFixed(0)} ms, ${unetGflops.toFixed(1)} GFLOP/s | |`);
  line(`| wasm Conv2D ${B}x28x28x${cfg.ch} 3x3 | ${convMs.toFixed(1)} ms, ${convGflops.toFixed(1)} GFLOP/s | |`);
  line(`| forward FLOP rate / Conv2D rate | ${(unetGflops / convGflops).toFixed(2)} | >= 0.7 |`);
  line(`| training step / forward | ${stepMs.toFixed(0)} / ${fwdMs.toFixed(0)} ms = ${(stepMs / fwdMs).toFixed(2)} | <= 3.5 |`);
  if (info.name === 'wasm') line(`| same, filter gradient composed from stock wasm kernels | ${stepComposedMs.toFixed(0)} / ${fwdMs.toFixed(0)} ms = ${(stepComposedMs / fwdMs).toFixed(2)} | (before) |`);
  line(`| certification, noisy base (sigma 0.5) | ${noisyRate.toFixed(0)} noise samples/s | |`);
  line(`| certification, dds base (sigma 0.5) | ${ddsRate.toFixed(0)} noise samples/s (${(ddsRate / noisyRate).toFixed(2)}x noisy) | >= 0.4x |`);
  line(`| certification, dds base on the distilled ch-12 denoiser${trained ? '' : ' (untrained weights of its shape)'} | ${studentRate.toFixed(0)} noise samples/s (${(studentRate / noisyRate).toFixed(2)}x noisy) | >= 0.4x |`);
  line(`| oneshot batch 64, 1 worker thread | ${one.toFixed(1)} images/s | |`);
  line(`| oneshot batch 64, 2 worker threads | ${two.toFixed(1)} images/s (${(two / one).toFixed(2)}x) | >= 1.8x |`);

  // attack cost, so a robustness run can be budgeted (`advpurify bench robustness --report-cost` for other settings)
  const { attackCost, renderCost } = await import('../../attacks/bench/cost.js');
  const cost = await attackCost({ dataset: 'fashion-mnist', preset: 'standard', defenses: ['none', 'median', 'oneshot', 'diffpure'] });
  line('');
  for (const l of renderCost(cost).trimEnd().split('\n')) line(l);
}
