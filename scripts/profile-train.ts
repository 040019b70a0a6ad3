/**
 * Per-kernel time of one diffusion training step vs one forward pass (batch 64), for finding
 * where the training/forward ratio goes. Usage: node --import tsx scripts/profile-train.ts [batch=64]
 */
import { initBackend, tf } from '../src/backend/index.js';
import { createPurifier } from '../src/purify/index.js';
import { unetForward } from '../src/models/unet.js';

const B = Number(process.argv[2] ?? 64);
await initBackend();
const p = await createPurifier({ seed: 1 });
const cfg = p.model.meta.unet;
const x = tf.randomNormal([B, 28, 28, 1]) as tf.Tensor4D;
const t = tf.fill([B], 100) as tf.Tensor1D;
const e = tf.randomNormal([B, 28, 28, 1]);
const vars = Object.fromEntries(Object.entries(p.model.params).map(([k, v]) => [k, tf.variable(v.clone(), true, `prof/${k}`)]));
const opt = tf.train.adam(1e-4);
const step = () => {
  const l = opt.minimize(() => unetForward(vars, cfg, x, t).sub(e).square().mean() as tf.Scalar, true, Object.values(vars));
  l?.dataSync();
  l?.dispose();
};
const fwd = () => tf.tidy(() => unetForward(vars, cfg, x, t)).dispose();
step(); fwd();
async function prof(name: string, f: () => void) {
  const t0 = performance.now();
  const info = await tf.profile(f);
  const wall = performance.now() - t0;
  const by = new Map<string, { ms: number; n: number }>();
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const r = by.get(k.name) ?? { ms: 0, n: 0 };
    r.ms += ms; r.n++;
    by.set(k.name, r);
  }
  const rows = [...by.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const total = rows.reduce((s, [, r]) => s + r.ms, 0);
  console.log(`\n## ${name}: wall ${wall.toFixed(0)} ms (profiled), kernels sum ${total.toFixed(0)} ms`);
  for (const [k, r] of rows.slice(0, 25)) console.log(`${k.padEnd(28)} ${r.ms.toFixed(1).padStart(8)} ms  x${r.n}`);
  if (process.env.BIG) {
    const big = new Map<string, { ms: number; n: number }>();
    for (const k of info.kernels) {
      if (/Conv2D/.test(k.name)) continue;
      const sz = Math.max(...k.inputShapes.map((s) => (s ?? []).reduce((p, q) => p * q, 1)));
      const key = `${k.name} ${sz >= 1e6 ? 'big' : sz >= 1e5 ? 'mid' : 'small'}`;
      const r = big.get(key) ?? { ms: 0, n: 0 };
      r.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0; r.n++;
      big.set(key, r);
    }
    for (const [k, r] of [...big.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 30)) console.log(`${r.ms.toFixed(1).padStart(8)} ms x${r.n} ${k}`);
  }
  if (process.env.SHAPES) {
    const shapes = new Map<string, { ms: number; n: number }>();
    for (const k of info.kernels) {
      if (!new RegExp(process.env.SHAPES === "1" ? "Conv2D" : process.env.SHAPES!).test(k.name) || k.name.endsWith("__op")) continue;
      const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
      const r = shapes.get(key) ?? { ms: 0, n: 0 };
      r.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0; r.n++;
      shapes.set(key, r);
    }
    for (const [k, r] of [...shapes.entries()].sort()) console.log(`${r.ms.toFixed(1).padStart(8)} ms x${r.n} ${k}`);
  }
}
const time = (f: () => void, n = 3) => { let best = Infinity; for (let i = 0; i < n; i++) { const t0 = performance.now(); f(); best = Math.min(best, performance.now() - t0); } return best; };
const fm = time(fwd), sm = time(step);
console.log(`forward ${fm.toFixed(0)} ms, step ${sm.toFixed(0)} ms, ratio ${(sm / fm).toFixed(2)}`);
await prof('forward', fwd);
await prof('train step', step);
{
  const f = () => unetForward(vars, cfg, x, t).sub(e).square().mean() as tf.Scalar;
  let gMs = Infinity, aMs = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const { value, grads } = tf.variableGrads(f, Object.values(vars));
    value.dataSync();
    Object.values(grads)[0].dataSync();
    const t1 = performance.now();
    opt.applyGradients(grads as never);
    (Object.values(vars)[0] as tf.Tensor).dataSync();
    const t2 = performance.now();
    tf.dispose([value, ...Object.values(grads)]);
    gMs = Math.min(gMs, t1 - t0); aMs = Math.min(aMs, t2 - t1);
  }
  const n = Object.values(vars).reduce((s, v) => s + v.size, 0);
  console.log(`grads ${gMs.toFixed(0)} ms, adam apply ${aMs.toFixed(0)} ms over ${Object.keys(vars).length} variables, ${n} params`);
}
