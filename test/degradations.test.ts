import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf, initBackend, type Tensor4D } from '../src/backend/index.js';
import { batch, loadFixture } from '../src/data/index.js';
import { DEGRADATIONS, DEGRADATION_NAMES, SEVERITIES, type Degradation, getDegradation } from '../src/degradations/index.js';

const N = 32;
let gray: Tensor4D; // 32 Fashion-MNIST images [32, 28, 28, 1]
let rgb: Tensor4D; // the same shapes, each tinted with two random colours [32, 28, 28, 3]

beforeAll(async () => {
  await initBackend();
  const b = batch(loadFixture(), Array.from({ length: N }, (_, i) => i));
  b.y.dispose();
  gray = b.x;
  rgb = tf.tidy(() => {
    const fg = tf.randomUniform([N, 1, 1, 3], 0, 1, 'float32', 1);
    const bg = tf.randomUniform([N, 1, 1, 3], 0, 1, 'float32', 2);
    return gray.mul(fg).add(tf.sub(1, gray).mul(bg)) as Tensor4D;
  });
});

afterAll(() => {
  gray.dispose();
  rgb.dispose();
});

const meanAbsDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => a.sub(b).abs().mean().dataSync()[0]);
/** The batch a degradation acts on: colour transforms need RGB. */
const inputFor = (d: Degradation) => (d.channels === 'rgb' ? rgb : gray);

async function values(d: Degradation, x: Tensor4D, severity: 1 | 2 | 3 | 4 | 5, seed: number): Promise<Float32Array> {
  const { y } = await d.apply(x, severity, seed);
  const v = (await y.data()) as Float32Array;
  y.dispose();
  return v;
}

describe.each(DEGRADATION_NAMES)('degradation %s', (name) => {
  const d: Degradation = DEGRADATIONS[name];

  it('keeps the shape, stays in [0, 1] and records the tabulated parameters', async () => {
    expect(d.name).toBe(name);
    for (const x of [gray, rgb]) {
      for (const severity of [1, 5] as const) {
        const { y, params } = await d.apply(x, severity, 7);
        expect(y.shape).toEqual(x.shape);
        const v = await y.data();
        y.dispose();
        expect(v.every((p) => p >= 0 && p <= 1)).toBe(true);
        expect(params).toMatchObject({ severity, seed: 7 });
        if (!('skipped' in params)) {
          for (const [key, row] of Object.entries(d.table)) expect(params[key]).toEqual(row[severity - 1]);
        }
      }
    }
  });

  it('is deterministic under a seed', async () => {
    const x = inputFor(d);
    const a = await values(d, x, 3, 42);
    expect(await values(d, x, 3, 42)).toEqual(a);
    const other = await values(d, x, 3, 43);
    if (d.random) expect(other).not.toEqual(a);
    else expect(other).toEqual(a); // the seed is ignored
  });

  it('moves further from the input at every severity step', async () => {
    const x = inputFor(d);
    const dist: number[] = [];
    for (const severity of SEVERITIES) {
      const { y } = await d.apply(x, severity, 2024);
      dist.push(meanAbsDiff(y, x));
      y.dispose();
    }
    expect(dist[0]).toBeGreaterThan(0.002);
    for (let s = 1; s < 5; s++) expect(dist[s], `severity ${s + 1} vs ${s}: ${dist.join(', ')}`).toBeGreaterThan(dist[s - 1]);
    expect(dist[4]).toBeGreaterThan(1.5 * dist[0]);
  });

  it('leaks no tensors', async () => {
    const before = tf.memory().numTensors;
    const { y } = await d.apply(inputFor(d), 4, 5);
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects a severity outside 1..5', async () => {
    await expect(async () => d.apply(gray, 6 as 5, 0)).rejects.toThrow(RangeError);
    await expect(async () => d.apply(gray, 0 as 1, 0)).rejects.toThrow(RangeError);
  });

  if (d.sync && d.differentiable) {
    it('passes finite, non-zero gradients to its input', () => {
      const x = tf.tidy(() => inputFor(d).slice(0, 4)) as Tensor4D;
      const before = tf.memory().numTensors;
      const g = tf.grad((v: tf.Tensor) => d.apply(v as Tensor4D, 3, 9).y.square().sum())(x);
      const gv = g.dataSync();
      g.dispose();
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
      expect(gv.every(Number.isFinite)).toBe(true);
      expect(gv.some((p) => p !== 0)).toBe(true);
    });
  }

  if (d.channels === 'rgb') {
    it('returns single-channel images unchanged and says so', async () => {
      const { y, params } = await d.apply(gray, 5, 3);
      expect(meanAbsDiff(y, gray)).toBe(0);
      y.dispose();
      expect(params.skipped).toMatch(/3 channels/);
    });
  }
});

describe('JPEG', () => {
  it('the differentiable approximation stays close to the real codec', async () => {
    for (const x of [gray, rgb]) {
      for (const severity of [1, 5] as const) {
        const real = await DEGRADATIONS.jpeg.apply(x, severity, 0);
        const approx = DEGRADATIONS['jpeg-dct'].apply(x, severity, 0);
        const gap = meanAbsDiff(approx.y, real.y);
        const effect = meanAbsDiff(real.y, x);
        real.y.dispose();
        approx.y.dispose();
        expect(gap, `gap ${gap} vs effect ${effect}`).toBeLessThan(0.3 * effect);
      }
    }
  });

  it('rejects channel counts other than 1 and 3', async () => {
    const x = tf.zeros([1, 8, 8, 2]) as Tensor4D;
    await expect(DEGRADATIONS.jpeg.apply(x, 1, 0)).rejects.toThrow(/1 or 3 channels/);
    expect(() => DEGRADATIONS['jpeg-dct'].apply(x, 1, 0)).toThrow(/1 or 3 channels/);
    x.dispose();
  });
});

describe('patches', () => {
  const gradOfSum = (name: 'paste-patches' | 'scramble-patches') =>
    tf.tidy(() => Array.from(tf.grad((v: tf.Tensor) => DEGRADATIONS[name].apply(v as Tensor4D, 5, 1).y.sum())(gray).dataSync()));

  it('scramble-patches moves pixels within each image: every pixel is used exactly once', () => {
    expect(gradOfSum('scramble-patches').every((g) => g === 1)).toBe(true);
  });

  it('paste-patches copies pixels: each output pixel comes from exactly one input pixel', () => {
    const g = gradOfSum('paste-patches');
    expect(g.every((v) => Number.isInteger(v) && v >= 0)).toBe(true);
    expect(g.reduce((a, b) => a + b, 0)).toBe(gray.size);
    expect(g.some((v) => v === 0) && g.some((v) => v >= 2)).toBe(true); // covered pixels, reused sources
  });
});

describe('registry and documentation', () => {
  it('looks degradations up by name and rejects unknown ones', () => {
    expect(getDegradation('pixelate')).toBe(DEGRADATIONS.pixelate);
    expect(() => getDegradation('fog')).toThrow(/unknown degradation "fog"/);
  });

  it('the README severity table matches the code', () => {
    const readme = readFileSync(new URL('../src/degradations/README.md', import.meta.url), 'utf8');
    for (const name of DEGRADATION_NAMES) {
      for (const [key, row] of Object.entries(DEGRADATIONS[name].table)) {
        expect(readme).toContain(`| ${name} | ${key} | ${row.join(' | ')} |`);
      }
    }
  });
});
