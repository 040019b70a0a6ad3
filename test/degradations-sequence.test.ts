import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf, initBackend, type Tensor4D } from '../src/backend/index.js';
import { batch, loadFixture } from '../src/data/index.js';
import { DEGRADATIONS, DEGRADATION_NAMES, randomSequence, sequence, type DegradationName } from '../src/degradations/index.js';

let x: Tensor4D; // 8 Fashion-MNIST images [8, 28, 28, 1]

beforeAll(async () => {
  await initBackend();
  const b = batch(loadFixture(), [0, 1, 2, 3, 4, 5, 6, 7]);
  b.y.dispose();
  x = b.x;
});

afterAll(() => x.dispose());

const read = (t: tf.Tensor) => Array.from(t.dataSync());
type StepLog = { name: DegradationName; severity: number; seed: number; params: Record<string, unknown> };

describe('randomSequence', () => {
  it('is reproducible from its seed and differs across seeds', () => {
    const a = randomSequence({ length: 4, seed: 11, channels: 1 });
    const b = randomSequence({ length: 4, seed: 11, channels: 1 });
    expect(b.steps).toEqual(a.steps);
    const ya = a.applySync(x);
    const yb = b.applySync(x);
    expect(read(yb.y)).toEqual(read(ya.y));
    expect(yb.params).toEqual(ya.params);
    tf.dispose([ya.y, yb.y]);
    expect(randomSequence({ length: 4, seed: 12, channels: 1 }).steps).not.toEqual(a.steps);
  });

  it('uses a different degradation at each step, from the pool and severities asked for', () => {
    const names: DegradationName[] = ['gaussian-noise', 'pixelate', 'contrast'];
    for (let seed = 0; seed < 20; seed++) {
      const { steps } = randomSequence({ length: 7, seed, names, severities: [2, 4] });
      expect(steps).toHaveLength(7);
      steps.forEach((s, i) => {
        expect(names).toContain(s.name);
        expect([2, 4]).toContain(s.severity);
        if (i > 0) expect(s.name).not.toBe(steps[i - 1].name);
      });
      expect(new Set(steps.slice(0, 3).map((s) => s.name)).size).toBe(3); // no repeat before the pool is used up
    }
  });

  it('draws from every synchronous degradation by default, without RGB-only ones for grey images', () => {
    const grey = new Set(randomSequence({ length: 200, seed: 3, channels: 1 }).steps.map((s) => s.name));
    const expected = DEGRADATION_NAMES.filter((n) => DEGRADATIONS[n].sync && DEGRADATIONS[n].channels === 'any');
    expect([...grey].sort()).toEqual([...expected].sort());
    const all = new Set(randomSequence({ length: 200, seed: 3 }).steps.map((s) => s.name));
    expect(all.has('hue-shift')).toBe(true);
    expect(all.has('jpeg')).toBe(false);
  });

  it('records every step with its parameters and equals applying the steps one by one', () => {
    const seq = randomSequence({ length: 3, seed: 5, channels: 1 });
    const before = tf.memory().numTensors;
    const { y, params } = seq.applySync(x);
    const log = params.steps as StepLog[];
    expect(log.map(({ name, severity, seed }) => ({ name, severity, seed }))).toEqual(seq.steps);
    log.forEach((step) => expect(step.params).toMatchObject({ severity: step.severity, seed: step.seed }));

    let manual = x;
    for (const s of seq.steps) {
      const d = DEGRADATIONS[s.name];
      if (!d.sync) throw new Error('unexpected async step');
      const next = d.apply(manual, s.severity, s.seed).y;
      if (manual !== x) manual.dispose();
      manual = next;
    }
    expect(read(y)).toEqual(read(manual));
    tf.dispose([y, manual]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('runs asynchronous steps through apply, and applySync refuses them without leaking', async () => {
    const seq = sequence([
      { name: 'gaussian-blur', severity: 2, seed: 1 },
      { name: 'jpeg', severity: 3, seed: 2 },
    ]);
    expect(seq.sync).toBe(false);
    const before = tf.memory().numTensors;
    expect(() => seq.applySync(x)).toThrow(/asynchronous/);
    const { y, params } = await seq.apply(x);
    expect(y.shape).toEqual(x.shape);
    expect((params.steps as StepLog[]).map((s) => s.name)).toEqual(['gaussian-blur', 'jpeg']);
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a sequence of differentiable steps passes gradients (usable inside tf.grad)', () => {
    const seq = randomSequence({ length: 3, seed: 8, names: ['motion-blur', 'jpeg-dct', 'scramble-patches', 'gamma'] });
    const g = tf.grad((v: tf.Tensor) => seq.applySync(v as Tensor4D).y.sum())(x);
    const gv = g.dataSync();
    g.dispose();
    expect(gv.every(Number.isFinite)).toBe(true);
    expect(gv.some((p) => p !== 0)).toBe(true);
  });

  it('length 0 is the identity; bad options are rejected', () => {
    const { y, params } = randomSequence({ length: 0, seed: 1 }).applySync(x);
    expect(read(y)).toEqual(read(x));
    expect(params.steps).toEqual([]);
    y.dispose();
    expect(() => randomSequence({ length: -1, seed: 1 })).toThrow(RangeError);
    expect(() => randomSequence({ length: 2, seed: 1, names: ['pixelate'] })).toThrow(/at least 2/);
    expect(() => sequence([{ name: 'fog' as DegradationName, severity: 1, seed: 0 }])).toThrow(/unknown degradation/);
  });
});
