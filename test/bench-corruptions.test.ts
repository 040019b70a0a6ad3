/**
 * `advpurify bench corruptions` at smoke scale (8 fixture images, 2 degradations, 2 severities, a tiny
 * untrained restoration model) and the image-quality measures it reports (PSNR, SSIM).
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { batch, loadFixture, take } from '../src/data/index.js';
import { benchCorruptions, benchSeed, conditionsFor, runCorruptionBench, type Preprocess } from '../src/bench/corruptions.js';
import { LogSettingsMismatchError } from '../src/util/tsv-log.js';
import { gaussianWindow, psnrPerImage, ssimPerImage, SSIM_CONSTANTS } from '../src/bench/similarity.js';
import { initLevelNet } from '../src/models/level-net.js';
import { initUNet, type UNetConfig } from '../src/models/unet.js';
import { saveWeights, weightsFingerprint } from '../src/models/weights.js';
import { modelsDir } from '../src/models/paths.js';
import { createPurifier, loadClassifier } from '../src/purify/index.js';
import { bitDepth, medianFilter } from '../attacks/defenses.js';

/** SSIM in float64 with explicit loops (Wang et al. 2004, ssim_index.m), single channel, one image. */
function ssimReference(x: Float64Array, y: Float64Array, h: number, w: number): number {
  const { window: k, k1, k2 } = SSIM_CONSTANTS;
  const g = gaussianWindow(k, SSIM_CONSTANTS.sigma);
  let total = 0;
  let count = 0;
  for (let i = 0; i + k <= h; i++) {
    for (let j = 0; j + k <= w; j++) {
      let [mx, my, xx, yy, xy] = [0, 0, 0, 0, 0];
      for (let a = 0; a < k; a++) {
        for (let b = 0; b < k; b++) {
          const wt = g[a] * g[b];
          const [u, v] = [x[(i + a) * w + j + b], y[(i + a) * w + j + b]];
          mx += wt * u;
          my += wt * v;
          xx += wt * u * u;
          yy += wt * v * v;
          xy += wt * u * v;
        }
      }
      const [vx, vy, cov] = [xx - mx * mx, yy - my * my, xy - mx * my];
      total += ((2 * mx * my + k1 ** 2) * (2 * cov + k2 ** 2)) / ((mx * mx + my * my + k1 ** 2) * (vx + vy + k2 ** 2));
      count++;
    }
  }
  return total / count;
}

describe('PSNR and SSIM', () => {
  it('PSNR: known values', () => {
    const a = tf.fill([2, 8, 8, 1], 0.5) as Tensor4D;
    const b = tf.concat([tf.fill([1, 8, 8, 1], 0.6), tf.fill([1, 8, 8, 1], 0.5)]) as Tensor4D;
    const p = psnrPerImage(b, a);
    expect(p[0]).toBeCloseTo(20, 4); // MSE 0.01
    expect(p[1]).toBe(100); // identical: the 100 dB cap
    tf.dispose([a, b]);
  });

  it('SSIM: 1 for identical images, the luminance formula for flat ones, and the float64 reference on random ones', () => {
    const x = tf.randomUniform([3, 16, 20, 1], 0, 1, 'float32', 1) as Tensor4D;
    expect(Array.from(ssimPerImage(x, x)).every((v) => Math.abs(v - 1) < 1e-5)).toBe(true);
    // flat images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    const [a, b] = [0.5, 0.25];
    const fa = tf.fill([1, 12, 12, 1], a) as Tensor4D;
    const fb = tf.fill([1, 12, 12, 1], b) as Tensor4D;
    const c1 = SSIM_CONSTANTS.k1 ** 2;
    expect(ssimPerImage(fa, fb)[0]).toBeCloseTo((2 * a * b + c1) / (a * a + b * b + c1), 4); // float32: E[x^2] - mean^2
    // random images, and a noisier copy: within float32 error of the explicit-loop reference
    const y = tf.tidy(() => x.add(tf.randomNormal(x.shape, 0, 0.1, 'float32', 2)).clipByValue(0, 1) as Tensor4D);
    const got = ssimPerImage(y, x);
    const [xs, ys] = [x.dataSync(), y.dataSync()];
    for (let i = 0; i < 3; i++) {
      const ref = ssimReference(Float64Array.from(xs.subarray(i * 320, (i + 1) * 320)), Float64Array.from(ys.subarray(i * 320, (i + 1) * 320)), 16, 20);
      expect(Math.abs(got[i] - ref)).toBeLessThan(1e-4);
      expect(got[i]).toBeLessThan(0.99);
    }
    tf.dispose([x, y, fa, fb]);
  });
});

describe('bench corruptions (8 fixture images, 2 degradations, severities 1 and 3)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'advpurify-corruptions-'));
  const data = take(loadFixture(), 8);
  let preprocessors: Record<string, Preprocess>;
  let classifier: (x: Tensor4D) => tf.Tensor2D;
  const options = () => ({ data, classifier, preprocessors, outDir: join(dir, 'out'), degradations: ['gaussian-noise', 'pixelate'], severities: [1, 3] as (1 | 3)[], chunk: 4, seed: 2 });

  beforeAll(async () => {
    // a tiny, untrained restoration model: the benchmark's plumbing, not its numbers
    const tiny: UNetConfig = { imageChannels: 1, ch: 8, mult: [1, 1], groups: 4, tembDim: 32 };
    const params = { ...initUNet(tiny, 1), ...initLevelNet({ imageChannels: 1, ch: 4 }, 2) };
    saveWeights(join(dir, 'model', 'restore'), params, { kind: 'ddpm-unet', dataset: 'fashion-mnist', T: 1000, schedule: 'cosine', unet: tiny, restore: { level: { imageChannels: 1, ch: 4 } } }, { float16: true });
    tf.dispose(Object.values(params));
    const restore = await createPurifier({ model: join(dir, 'model', 'restore'), mode: 'restore', tStar: 10, steps: 1, validate: false });
    const clf = await loadClassifier('fashion-mnist');
    classifier = (x) => clf.predict(x);
    preprocessors = { raw: (x) => x.clone(), median: medianFilter.forward, bitdepth: bitDepth(3).forward, restore: (x, seed) => restore.purify(x, { seed }) };
  });

  it('writes the log, JSON, Markdown heat-map tables and SVGs; clean raw images score PSNR 100 / SSIM 1 / agreement 100%', async () => {
    const r = await runCorruptionBench(options());
    for (const f of r.files) expect(existsSync(f), f).toBe(true);
    expect(r.cells).toHaveLength((1 + 2 * 2) * 4);
    expect(r.cells.every((c) => c.n === 8)).toBe(true);
    const clean = r.cells.find((c) => c.condition === 'clean' && c.preprocessor === 'raw')!;
    expect([clean.psnr, clean.agreement]).toEqual([100, 1]);
    expect(clean.ssim).toBeCloseTo(1, 5);
    const { x, y } = batch(data, Array.from({ length: 8 }, (_, i) => i));
    const acc = tf.tidy(() => classifier(x).argMax(-1).equal(y).mean().dataSync()[0]);
    expect(clean.accuracy).toBeCloseTo(acc, 6);
    tf.dispose([x, y]);
    const noisy = r.cells.find((c) => c.condition === 'gaussian-noise' && c.severity === 3 && c.preprocessor === 'raw')!;
    expect(noisy.psnr).toBeLessThan(25);
    expect(r.markdown).toMatch(/\| restore \| [\d.]+ \|/); // summary row
    expect(r.markdown).toMatch(/### median\n\n\| degradation \| 1 \| 3 \| mean \|\n\|---\|---\|---\|---\|\n\| gaussian-noise \|/);
    expect(readFileSync(r.files[3], 'utf8')).toMatch(/^<svg/);
    const json = JSON.parse(readFileSync(r.files[1], 'utf8'));
    expect(json.cells).toHaveLength(20);
  }, 600_000); // ~10 s on an idle 2-core machine

  it('resumes from its log: a complete log is not recomputed, a cut one is completed to the same numbers', async () => {
    const log = join(dir, 'out', 'corruptions.tsv');
    const full = readFileSync(log, 'utf8');
    const first = await runCorruptionBench(options());
    expect(readFileSync(log, 'utf8')).toBe(full);
    // an interrupted run: the last chunk's rows gone and half a line written
    const lines = full.split('\n');
    writeFileSync(log, lines.slice(0, -6).join('\n') + '\nclean\t0\tra');
    const again = await runCorruptionBench(options());
    expect(again.cells.map((c) => [c.condition, c.severity, c.preprocessor, c.accuracy, c.psnr.toFixed(3)]).sort())
      .toEqual(first.cells.map((c) => [c.condition, c.severity, c.preprocessor, c.accuracy, c.psnr.toFixed(3)]).sort());
  });

  it('keeps each preprocessor\'s rows tied to its settings: a changed one is refused, a new one is added', async () => {
    const provenance = (restore: unknown) => ({ classifier: 'c1', preprocessors: { raw: {}, median: { size: 3 }, bitdepth: { bits: 3 }, restore } });
    const out = join(dir, 'prov');
    const { bitdepth: _b, ...withoutBitdepth } = preprocessors;
    await runCorruptionBench({ ...options(), preprocessors: withoutBitdepth, outDir: out, provenance: provenance({ weights: 'r1' }), severities: [1] });
    await expect(runCorruptionBench({ ...options(), outDir: out, provenance: provenance({ weights: 'r2' }), severities: [1] }))
      .rejects.toThrow(/preprocessor restore was run with other settings \(restore: \{"weights":"r1"\} then, \{"weights":"r2"\} now\)/);
    await expect(runCorruptionBench({ ...options(), outDir: out, provenance: { ...provenance({ weights: 'r1' }), classifier: 'c2' }, severities: [1] }))
      .rejects.toThrow(LogSettingsMismatchError);
    await expect(runCorruptionBench({ ...options(), outDir: out, provenance: provenance({ weights: 'r1' }), severities: [1], chunk: 8 })).rejects.toThrow(/chunk: 4 then, 8 now/);
    // the restoration model retrained: the other preprocessors' rows stay usable, and bitdepth, new, joins
    const { restore: _r, ...others } = preprocessors;
    const r = await runCorruptionBench({ ...options(), preprocessors: others, outDir: out, provenance: provenance({ weights: 'r2' }), severities: [1] });
    expect(r.cells.every((c) => c.preprocessor !== 'restore')).toBe(true);
    expect(r.cells.filter((c) => c.preprocessor === 'bitdepth').length).toBe(3);
  }, 600_000);

  it('the restore preprocessors run with the settings asked for, and the log records them', async () => {
    const out = join(dir, 'settings');
    const r = await benchCorruptions({
      split: 'fixture', count: 4, degradations: ['pixelate'], severities: [1], preprocessors: ['restore', 'restore-x0'],
      restoreModel: join(dir, 'model'), restoreTStar: 7, restoreSteps: 2, coldSteps: 3, out, chunk: 4,
    });
    expect(r.cells.filter((c) => c.preprocessor === 'restore-x0')).toHaveLength(2); // clean, pixelate 1
    const recorded = JSON.parse(readFileSync(join(out, 'corruptions.settings.json'), 'utf8')).preprocessors;
    // 'restore' is what mode 'restore' does by default (the cold design), restore-x0 the other design
    expect([recorded.restore.steps, recorded.restore.restorer]).toEqual([3, 'cold']);
    expect([recorded['restore-x0'].tStar, recorded['restore-x0'].steps, recorded['restore-x0'].restorer]).toEqual([7, 2, 'x0']);
    // another t* on the same log is refused rather than mixed with the old rows
    await expect(benchCorruptions({
      split: 'fixture', count: 4, degradations: ['pixelate'], severities: [1], preprocessors: ['restore-x0'],
      restoreModel: join(dir, 'model'), restoreTStar: 9, restoreSteps: 2, out, chunk: 4,
    })).rejects.toThrow(/preprocessor restore-x0 was run with other settings/);
  }, 600_000);

  it('measures every row with the classifier variant asked for, records its fingerprint, and refuses to mix classifiers in one log', async () => {
    const out = join(dir, 'variant');
    const args = { split: 'fixture', count: 8, degradations: ['pixelate'], severities: [3], preprocessors: ['raw'], out, chunk: 8 };
    const r = await benchCorruptions({ ...args, classifier: 'classifier-restore' });
    const settings = JSON.parse(readFileSync(join(out, 'corruptions.settings.json'), 'utf8'));
    expect(settings.classifier).toBe(weightsFingerprint(join(modelsDir(), 'fashion-mnist', 'classifier-restore')));
    expect(settings.classifier).not.toBe(weightsFingerprint(join(modelsDir(), 'fashion-mnist', 'classifier')));
    const restoreAware = await loadClassifier('fashion-mnist', 'classifier-restore');
    const { x, y } = batch(take(loadFixture(), 8), Array.from({ length: 8 }, (_, i) => i));
    const acc = tf.tidy(() => restoreAware.predict(x).argMax(-1).equal(y).mean().dataSync()[0]);
    tf.dispose([x, y]);
    restoreAware.dispose();
    expect(r.cells.find((c) => c.condition === 'clean')!.accuracy).toBeCloseTo(acc, 6);
    await expect(benchCorruptions(args)).rejects.toThrow(LogSettingsMismatchError); // the default classifier on its log
    await expect(benchCorruptions({ ...args, classifier: 'classifier-nope' })).rejects.toThrow(/no classifier weights/);
  }, 600_000);

  it('seeds are odd (the trainer uses even ones), and degradation names are checked', () => {
    for (const s of [benchSeed(0, 'a'), benchSeed(1, 'x', 3), benchSeed('degrade', 'pixelate', 5, 950)]) expect(s % 2).toBe(1);
    expect(conditionsFor(1)).toContain('mix-3');
    expect(conditionsFor(1)).not.toContain('hue-shift');
    expect(() => conditionsFor(1, ['hue-shift'])).toThrow(/RGB/);
    expect(() => conditionsFor(1, ['fog'])).toThrow(/unknown degradation/);
  });
});
