import { describe, it, expect, beforeAll } from 'vitest';
import sharp from 'sharp';
import { pngHeader } from './png-bomb.js';
import { tf } from '../src/backend/index.js';
import { createPurifier, MAX_PASS, purify, Purifier, PurifyError, type ImagePurifier } from '../src/purify/index.js';
import { loadFixture, batch } from '../src/data/index.js';

const fixture = loadFixture();
const codeOf = async (p: Promise<unknown> | (() => unknown)): Promise<string | undefined> => {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(PurifyError);
    return (e as PurifyError).code;
  }
  return undefined;
};

/** A real PNG of fixture image i (through sharp, as a user would send it). */
async function fixturePng(i: number): Promise<Buffer> {
  const px = Buffer.from(fixture.images.subarray(i * 784, (i + 1) * 784).map((v) => Math.round(v * 255)));
  return sharp(px, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
}

describe('purify() with the shipped Fashion-MNIST diffusion model', () => {
  let diff: ImagePurifier;
  let one: ImagePurifier;
  beforeAll(async () => {
    diff = await createPurifier({ mode: 'diffpure', tStar: 100, steps: 2 });
    one = await createPurifier({ mode: 'oneshot', sigma: 0.25 });
  });

  it('keeps shape and range for every mode, and leaks no tensors', async () => {
    const { x, y } = batch(fixture, [0, 1, 2, 3]);
    const none = await createPurifier({ mode: 'none' });
    const before = tf.memory().numTensors;
    for (const p of [diff, one, none]) {
      const out = p.purify(x);
      expect(out.shape).toEqual([4, 28, 28, 1]);
      const [lo, hi] = tf.tidy(() => [out.min().dataSync()[0], out.max().dataSync()[0]]);
      expect(lo).toBeGreaterThanOrEqual(0);
      expect(hi).toBeLessThanOrEqual(1);
      tf.dispose(out);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
  });

  it('is reproducible with a seed and different without one', () => {
    const { x, y } = batch(fixture, [5, 6]);
    const a = diff.purify(x, { seed: 42 });
    const b = diff.purify(x, { seed: 42 });
    const c = diff.purify(x);
    const d = diff.purify(x);
    expect(tf.max(tf.abs(a.sub(b))).dataSync()[0]).toBe(0);
    expect(tf.max(tf.abs(c.sub(d))).dataSync()[0]).toBeGreaterThan(1e-3);
    tf.dispose([x, y, a, b, c, d]);
  });

  it('is differentiable end to end (attacks need gradients through every reverse step)', () => {
    const { x, y } = batch(fixture, [7]);
    const g = tf.grad((inp: tf.Tensor) => diff.purify(inp as tf.Tensor4D, { seed: 1 }).mean())(x);
    const norm = g.abs().sum().dataSync()[0];
    expect(Number.isFinite(norm)).toBe(true);
    expect(norm).toBeGreaterThan(0);
    tf.dispose([x, y, g]);
  });

  it('purifies a batch larger than one pass in slices: reproducible, per-image gradients, nothing left behind', () => {
    // one 1,000-image pass overran the wasm heap and left tensors behind; a large batch now goes in slices
    const sizes: number[] = [];
    const spy = Object.assign(Object.create(diff.model), {
      eps: (xt: tf.Tensor4D, t: tf.Tensor1D) => (sizes.push(xt.shape[0]), diff.model.eps(xt, t)),
    });
    const p = new Purifier(spy, { mode: 'diffpure', tStar: 100, steps: 1 });
    const n = MAX_PASS + 5;
    const { x, y } = batch(fixture, Array.from({ length: n }, (_, i) => i));
    const before = tf.memory().numTensors;
    const a = p.purify(x, { seed: 3 });
    expect(sizes).toEqual([MAX_PASS, 5]);
    const b = p.purify(x, { seed: 3 });
    expect(a.shape).toEqual([n, 28, 28, 1]);
    const [diffAB, lo, hi] = tf.tidy(() => [a.sub(b).abs().max(), a.min(), a.max()].map((v) => v.dataSync()[0]));
    expect(diffAB).toBe(0);
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    tf.dispose([a, b]);
    expect(tf.memory().numTensors).toBe(before);
    // the gradient of an image in the last slice reaches that image only
    const one = new Purifier(diff.model, { mode: 'oneshot', sigma: 0.25 });
    const g = tf.grad((inp: tf.Tensor) => one.purify(inp as tf.Tensor4D, { seed: 1 }).slice([n - 2, 0, 0, 0], [1, -1, -1, -1]).mean())(x);
    const perImage = Array.from(tf.tidy(() => g.abs().sum([1, 2, 3]).dataSync()));
    expect(perImage[n - 2]).toBeGreaterThan(0);
    expect(perImage.reduce((s, v, i) => s + (i === n - 2 ? 0 : v), 0)).toBe(0);
    tf.dispose([x, y, g]);
    expect(tf.memory().numTensors).toBe(before - 2);
  });

  it('guidance keeps the reconstruction closer to the input, stays differentiable and leaks nothing', async () => {
    const { x, y } = batch(fixture, [8, 9, 10, 11]);
    const far = await createPurifier({ tStar: 450, steps: 5, seed: 4 });
    const near = await createPurifier({ tStar: 450, steps: 5, seed: 4, guidance: 1 });
    const before = tf.memory().numTensors;
    const mse = (p: ImagePurifier) => tf.tidy(() => p.purify(x).sub(x).square().mean().dataSync()[0]);
    const [m0, m2] = [mse(far), mse(near)];
    expect(m2).toBeLessThan(0.6 * m0);
    const g = tf.grad((inp: tf.Tensor) => near.purify(inp as tf.Tensor4D).mean())(x);
    const norm = tf.tidy(() => g.abs().sum().dataSync()[0]);
    expect(Number.isFinite(norm) && norm > 0).toBe(true);
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
  });

  it('takes real image files (PNG, JPEG, WebP, RGB with alpha, any size) and returns a PNG', async () => {
    const png = await fixturePng(0);
    const big = await sharp(png).resize(113, 97, { fit: 'fill' }).toColourspace('srgb').ensureAlpha().webp().toBuffer();
    const jpg = await sharp(png).resize(56, 56).jpeg({ quality: 80 }).toBuffer();
    for (const buf of [png, big, jpg]) {
      const r = await one.purifyImage(buf);
      expect(r.tensor.shape).toEqual([1, 28, 28, 1]);
      const meta = await sharp(r.png).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 28, 28]);
      r.tensor.dispose();
    }
    const kept = await one.purifyImage(big, { keepSize: true });
    const meta = await sharp(kept.png).metadata();
    expect([meta.width, meta.height]).toEqual([113, 97]);
    kept.tensor.dispose();
    // the one-call API
    const out = await purify(png, { mode: 'oneshot', sigma: 0.25, seed: 3 });
    expect((await sharp(out).metadata()).format).toBe('png');
  });

  it('rejects bad input with typed errors', async () => {
    expect(await codeOf(one.purifyImage(Buffer.from('definitely not an image')))).toBe('DECODE_FAILED');
    expect(await codeOf(one.purifyImage(Buffer.alloc(0)))).toBe('DECODE_FAILED');
    const png = await fixturePng(1);
    expect(await codeOf(one.purifyImage(png.subarray(0, 40)))).toBe('DECODE_FAILED');
    expect(await codeOf(one.purifyImage(pngHeader(30000, 30000)))).toBe('TOO_MANY_PIXELS');
    expect(await codeOf(() => one.purify(tf.zeros([28, 28, 1]) as unknown as tf.Tensor4D))).toBe('BAD_SHAPE');
    expect(await codeOf(() => one.purify(tf.zeros([1, 32, 32, 1]) as tf.Tensor4D))).toBe('BAD_SHAPE');
    expect(await codeOf(() => one.purify(tf.fill([1, 28, 28, 1], NaN) as tf.Tensor4D))).toBe('BAD_VALUES');
    expect(await codeOf(() => one.purify(tf.fill([1, 28, 28, 1], 1.5) as tf.Tensor4D))).toBe('BAD_VALUES');
    expect(await codeOf(() => one.purify('x' as unknown as tf.Tensor4D))).toBe('BAD_INPUT');
    expect(await codeOf(createPurifier({ model: 'imagenet' }))).toBe('UNKNOWN_MODEL');
    expect(await codeOf(createPurifier({ mode: 'magic' as 'none' }))).toBe('UNKNOWN_MODE');
    for (const bad of [{ tStar: 0 }, { tStar: 1001 }, { tStar: 1.5 }, { steps: 0 }, { tStar: 10, steps: 11 }, { draws: 0 }, { draws: 1000 }, { sigma: -1 }, { seed: -3 }, { sampler: 'euler' }, { guidance: -1 }, { guidance: 1.5 }, { guidance: NaN }, { guidance: 1, sampler: 'ddim' }]) {
      const code = await codeOf(createPurifier(bad as never));
      expect(code, JSON.stringify(bad)).toBe('BAD_OPTION');
    }
    try {
      await createPurifier({ steps: 0 });
    } catch (e) {
      expect((e as PurifyError).field).toBe('steps');
    }
  });
});

describe('purify defaults', () => {
  it('diffpure and oneshot noise to the validated t* 450; restore keeps its short t* 100 pass; explicit values win', async () => {
    const { resolveOptions } = await import('../src/purify/index.js');
    expect(resolveOptions({}).tStar).toBe(450);
    expect(resolveOptions({}).mode).toBe('diffpure');
    expect(resolveOptions({}).steps).toBe(5);
    expect(resolveOptions({ mode: 'oneshot' }).tStar).toBe(450);
    expect(resolveOptions({ mode: 'restore' }).tStar).toBe(100);
    expect(resolveOptions({ mode: 'restore', tStar: 300 }).tStar).toBe(300);
    expect(resolveOptions({ tStar: 3 }).steps).toBe(3); // steps never exceed t*
  });
});
