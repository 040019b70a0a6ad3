import { initBackend, tf, type Tensor4D, type Tensor1D } from '../src/backend/index.js';
import { initUNet, unetForward, DEFAULT_UNET } from '../src/models/unet.js';
import { loadClassifier } from '../src/models/classifier.js';
await initBackend();
const B = 128;
const x = tf.randomNormal([B, 28, 28, 1]) as Tensor4D;
const t = tf.fill([B], 300, 'float32') as Tensor1D;
const time = (f: () => void, reps = 5) => { f(); const t0 = performance.now(); for (let i = 0; i < reps; i++) f(); return (performance.now() - t0) / reps; };
const clf = loadClassifier('fashion-mnist');
const tc = time(() => tf.tidy(() => { clf.predict(x).dataSync(); }));
console.log(`classifier ${(B / tc * 1000).toFixed(0)} img/s`);
for (const ch of [32, 24, 16, 12]) {
  const cfg = { ...DEFAULT_UNET, ch, groups: ch >= 16 ? 8 : 4 };
  const p = initUNet(cfg, 1);
  const tu = time(() => tf.tidy(() => { unetForward(p, cfg, x, t).dataSync(); }));
  const n = Object.values(p).reduce((a, v) => a + v.size, 0);
  console.log(`unet ch ${ch}: ${(B / tu * 1000).toFixed(0)} img/s, params ${n}, dds ratio ${(tc / (tu + tc)).toFixed(2)}`);
  tf.dispose(Object.values(p));
}
