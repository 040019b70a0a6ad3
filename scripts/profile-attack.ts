/**
 * Where an adaptive attack's time goes: one EOT gradient (full gradient through diffpure + classifier) on a
 * batch of fixture images, timed, then profiled per kernel (tf.profile), and the forward pass alone.
 * Usage: node --import tsx scripts/profile-attack.ts [batch=10] [tStar=450] [steps=5] [reps=3]   (SHAPES=1: per conv shape)
 * Per-kernel times under tf.profile carry a fixed overhead per call that inflates small kernels (a 7x7x64
 * Conv2DBackpropInput profiles at 3.8x its forward conv, times 2.2x in a plain loop): compare shapes in a loop.
 */
import { initBackend, readTidy, tf, type Tensor1D, type Tensor4D } from '../src/backend/index.js';
import { loadFixture, batch } from '../src/data/index.js';
import { createPurifier, loadClassifier } from '../src/purify/index.js';
import { adaptive } from '../attacks/eot.js';
import { purifierDefense } from '../attacks/defenses.js';

const [n, tStar, steps, reps] = [10, 450, 5, 3].map((d, i) => Number(process.argv[2 + i] ?? d));
await initBackend();
const fx = loadFixture();
const { x, y } = batch(fx, Array.from({ length: n }, (_, i) => i));
const clf = await loadClassifier('fashion-mnist');
const p = await createPurifier({ tStar, steps, validate: false });
const model = adaptive(purifierDefense(p), (v) => clf.predict(v), { eot: 1, seed: 1 });
const yl = y as Tensor1D;
const time = (label: string, f: () => void) => {
  f(); // warm-up
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) f();
  const ms = (performance.now() - t0) / reps;
  console.log(`${label}: ${ms.toFixed(0)} ms per batch of ${n} (${(ms / n).toFixed(1)} ms/image)`);
  return ms;
};
const grad = () => {
  const r = model.lossGrad(x as Tensor4D, yl, 'ce');
  r.grad.dataSync();
  tf.dispose([r.loss, r.grad, r.logits]);
};
const fwd = () => readTidy(() => clf.predict(p.purify(x as Tensor4D, { seed: 1 })));
const unet = () => readTidy(() => p.model.eps(x.mul(2).sub(1) as Tensor4D, tf.fill([n], 300) as tf.Tensor1D));
const tg = time('gradient (forward + backward, EOT 1)', grad);
const tf_ = time('forward (purify + classify)', fwd);
time('one U-Net forward', unet);
console.log(`gradient / forward: ${(tg / tf_).toFixed(2)}`);
const prof = await tf.profile(() => grad());
const by = new Map<string, { ms: number; calls: number }>();
for (const k of prof.kernels) {
  const e = by.get(k.name) ?? { ms: 0, calls: 0 };
  e.ms += k.kernelTimeMs as number;
  e.calls++;
  by.set(k.name, e);
}
const total = [...by.values()].reduce((a, b) => a + b.ms, 0);
console.log(`kernels: ${total.toFixed(0)} ms in ${prof.kernels.length} calls (profiled gradient; wall time above is ${tg.toFixed(0)} ms)`);
console.log('| kernel | ms | calls | share |\n|---|---:|---:|---:|');
for (const [k, v] of [...by.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20)) {
  console.log(`| ${k} | ${v.ms.toFixed(1)} | ${v.calls} | ${((100 * v.ms) / total).toFixed(1)}% |`);
}
if (process.env.SHAPES) {
  const per = new Map<string, { ms: number; calls: number }>();
  for (const k of prof.kernels) {
    if (!k.name.startsWith('Conv2D')) continue;
    const key = `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join(' ')}`;
    const e = per.get(key) ?? { ms: 0, calls: 0 };
    e.ms += k.kernelTimeMs as number;
    e.calls++;
    per.set(key, e);
  }
  console.log('| conv kernel, input shapes | ms | calls |\n|---|---:|---:|');
  for (const [k, v] of [...per.entries()].sort((a, b) => b[1].ms - a[1].ms)) console.log(`| ${k} | ${v.ms.toFixed(1)} | ${v.calls} |`);
}
tf.dispose([x, y]);
