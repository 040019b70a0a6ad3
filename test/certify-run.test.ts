/**
 * The certify harness (certify/run.ts, certify/report.ts) on a tiny synthetic dataset and on hand-written logs;
 * worker threads and the built-in bases (certify/load.ts) on fixture images; the CLI's errors for missing models.
 */
import { execFile } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../src/backend/index.js';
import { type Dataset, loadFixture } from '../src/data/index.js';
import { modelsDir } from '../src/models/paths.js';
import type { BaseClassifier } from '../certify/core.js';
import { baseModels } from '../certify/load.js';
import { LogSettingsMismatchError, type CertifyProgress, type LogRow, certifyImages, imageSeed, logPath, logSettings, planIndices, readLog, runCertify, settingsPath } from '../certify/run.js';
import { maxCertifiableRadius } from '../certify/core.js';
import { UsageError, indexList } from '../src/cli/args.js';

beforeAll(async () => {
  await initBackend();
});

const tmp = () => mkdtempSync(join(tmpdir(), 'advpurify-certify-'));

/** 1-pixel images; class 1 iff the pixel is above 0.5, except index 6, labelled against its pixel. */
const values = [0.9, 0.1, 0.8, 0.2, 0.95, 0.05, 0.7, 0.3];
const dataset: Dataset = {
  name: 'synthetic',
  images: Float32Array.from(values),
  labels: Int32Array.from([1, 0, 1, 0, 1, 0, 0, 0]),
  count: values.length,
  shape: [1, 1, 1],
  classNames: ['low', 'high'],
};

function thresholdBase(calls: { n: number }): BaseClassifier {
  return (z) => {
    calls.n++;
    return tf.tidy(() => z.reshape([-1]).greater(0.5).cast('int32'));
  };
}

const common = { dataset, n0: 20, n: 500, alpha: 0.01, batchSize: 100, seed: 11 };

describe('certify harness', () => {
  it('plans indices 0, skip, 2 skip, ... up to count', () => {
    expect(planIndices(10, { count: 3, skip: 2 })).toEqual([0, 2, 4]);
    expect(planIndices(5, { skip: 2 })).toEqual([0, 2, 4]);
    expect(planIndices(5, { count: 100 })).toEqual([0, 1, 2, 3, 4]);
    expect(planIndices(5, { indices: [3, 1] })).toEqual([3, 1]);
  });

  it('reads --indices lists with ranges either way, and rejects malformed or repeated ones', () => {
    expect(indexList('0-3,9,7-5', 'indices')).toEqual([0, 1, 2, 3, 9, 7, 6, 5]);
    expect(indexList('4', 'indices')).toEqual([4]);
    expect(indexList(undefined, 'indices')).toBeUndefined();
    for (const bad of ['1-', '-2', 'a', '1.5', '', '0-3,2']) expect(() => indexList(bad, 'indices')).toThrow(UsageError);
  });

  it('skips an image that another run sharing the log certifies meanwhile', async () => {
    const dir = tmp();
    const log = join(dir, 'shared.tsv');
    const other = join(dir, 'other.tsv');
    const calls = { n: 0 };
    const opts = { ...common, baseName: 'thr', sigma: 0.25 };
    await certifyImages({ ...opts, base: thresholdBase({ n: 0 }), indices: [2], log: other });
    const otherRow = readFileSync(other, 'utf8').trimEnd().split('\n')[1];
    const inner = thresholdBase(calls);
    let injected = false;
    // while this run certifies image 0, "another process" appends image 2 to the shared log
    const base: BaseClassifier = (z) => {
      if (!injected) {
        injected = true;
        appendFileSync(log, otherRow + '\n');
      }
      return inner(z);
    };
    const rows = await certifyImages({ ...opts, base, indices: [0, 2, 1], log });
    expect(rows.map((r) => r.index).sort()).toEqual([0, 1, 2]);
    const lines = readFileSync(log, 'utf8').trimEnd().split('\n').slice(1);
    expect(lines.filter((l) => l.startsWith('2\t'))).toEqual([otherRow]); // image 2 not certified a second time
    expect(lines).toHaveLength(3);
  });

  it('writes a log per (base, sigma), resumes without recomputing finished images, and writes the report', async () => {
    const dir = tmp();
    const calls = { n: 0 };
    const bases = { thr: () => thresholdBase(calls) };
    const before = tf.memory().numTensors;
    await runCertify({ ...common, bases, sigmas: [0.25, 0.5], count: 4, skip: 2, outDir: dir });
    expect(tf.memory().numTensors).toBe(before);
    for (const sigma of [0.25, 0.5]) {
      const rows = readLog(logPath(dir, 'thr', sigma));
      expect(rows.map((r) => r.index)).toEqual([0, 2, 4, 6]);
      for (const r of rows) {
        expect(r.label).toBe(dataset.labels[r.index]);
        expect(r.prediction).toBe(1); // all four pixels are above 0.5
        expect(r.correct).toBe(r.prediction === r.label);
        expect(r.radius).toBeGreaterThan(0);
        expect(r.radius).toBeLessThanOrEqual(Math.abs(values[r.index] - 0.5)); // the true radius of a threshold
      }
    }
    const callsFirst = calls.n;
    expect(callsFirst).toBe(2 * 4 * 6); // 2 sigmas x 4 images x (1 batch of n0 = 20 + 5 batches of n = 500)

    const progress: CertifyProgress[] = [];
    const { report, files } = await runCertify({ ...common, bases, sigmas: [0.25, 0.5], count: 8, outDir: dir, onProgress: (p) => progress.push(p) });
    expect(calls.n - callsFirst).toBe(2 * 4 * 6); // only the 4 new images per sigma
    expect(progress.map((p) => p.row.index).sort()).toEqual([1, 1, 3, 3, 5, 5, 7, 7]);
    expect(progress.every((p) => p.total === 8)).toBe(true);
    const rows = readLog(logPath(dir, 'thr', 0.5));
    expect(rows.map((r) => r.index).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // 7 of 8 correct (index 6 is mislabelled), so clean certified accuracy is 7/8 at both sigmas
    expect(report.curves.filter((c) => c.sigma !== 'best').map((c) => c.accuracy[0])).toEqual([7 / 8, 7 / 8]);
    expect(report.seed).toBe(11);
    expect(JSON.parse(readFileSync(files.json, 'utf8'))).toEqual(JSON.parse(JSON.stringify(report)));
    expect(readFileSync(files.markdown, 'utf8')).toContain('| thr | 0.5 | 8 | 0.875 |');
    const svg = readFileSync(files.svg, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<polyline/g)?.length).toBe(2);
  });

  it('gives an image the same certificate whether it is run alone, in a range, or resumed', async () => {
    const calls = { n: 0 };
    const opts = { ...common, baseName: 'thr', base: thresholdBase(calls), sigma: 0.25 };
    const a = await certifyImages({ ...opts, indices: [0, 1, 2, 3], log: join(tmp(), 'a.tsv') });
    const b = await certifyImages({ ...opts, indices: [3, 2], log: join(tmp(), 'b.tsv') });
    const strip = (r: (typeof a)[number]) => ({ ...r, seconds: 0 });
    expect(b.map(strip)).toEqual([a[3], a[2]].map(strip));
  });

  it('a run without --seed records its CSPRNG seed and a resumed run keeps it', async () => {
    const dir = tmp();
    const { seed: _fixed, ...unseeded } = common;
    const bases = { thr: () => thresholdBase({ n: 0 }) };
    const first = await runCertify({ ...unseeded, bases, sigmas: [0.25], count: 2, outDir: dir });
    const resumed = await runCertify({ ...unseeded, bases, sigmas: [0.25], count: 4, outDir: dir });
    expect(resumed.report.seed).toBe(first.report.seed);
    expect(JSON.parse(readFileSync(join(dir, 'seed.json'), 'utf8')).seed).toBe(first.report.seed);
    const rows = readLog(logPath(dir, 'thr', 0.25));
    expect(rows.map((r) => r.seed)).toEqual(rows.map((r) => imageSeed(first.report.seed, 'thr', 0.25, r.index)));
    const other = tmp();
    const fresh = await runCertify({ ...unseeded, bases, sigmas: [0.25], count: 2, outDir: other });
    expect(fresh.report.seed).not.toBe(first.report.seed); // 32 random bits each
  });

  it('recovers a log cut mid-row', async () => {
    const log = join(tmp(), 'cut.tsv');
    const calls = { n: 0 };
    const opts = { ...common, baseName: 'thr', base: thresholdBase(calls), sigma: 0.25, log };
    await certifyImages({ ...opts, indices: [0, 1] });
    appendFileSync(log, '2\t1\t1\t0.3'); // a run killed while writing index 2
    expect(readLog(log).map((r) => r.index)).toEqual([0, 1]);
    await certifyImages({ ...opts, indices: [0, 1, 2, 3] });
    const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
    expect(lines.slice(1).every((l) => l.split('\t').length === 8)).toBe(true);
    expect(readLog(log).map((r) => r.index)).toEqual([0, 1, 2, 3]);
  });

  it('counts an image logged twice (two runs sharing a log) once, keeping the first row', async () => {
    const log = join(tmp(), 'twice.tsv');
    const calls = { n: 0 };
    const opts = { ...common, baseName: 'thr', base: thresholdBase(calls), sigma: 0.25, log };
    await certifyImages({ ...opts, indices: [0, 1] });
    const [, first] = readFileSync(log, 'utf8').trimEnd().split('\n');
    const f = first.split('\t');
    appendFileSync(log, [f[0], f[1], f[2], '9.999999', f[4], '1.000', f[6], f[7]].join('\t') + '\n');
    const rows = readLog(log);
    expect(rows.map((r) => r.index)).toEqual([0, 1]);
    expect(rows[0].radius).toBe(Number(f[3]));
    const before = calls.n;
    expect((await certifyImages({ ...opts, indices: [0, 1] })).length).toBe(2);
    expect(calls.n).toBe(before); // nothing certified again
  });

  it('computes certified accuracy and the best over sigma from a known log', async () => {
    const dir = tmp();
    const header = 'index\tlabel\tprediction\tradius\tcorrect\tseconds\tpA\tseed\n';
    const row = (i: number, pred: number, radius: number) => `${i}\t${dataset.labels[i]}\t${pred}\t${radius}\t${pred === dataset.labels[i] ? 1 : 0}\t1.0\t0.9\t1\n`;
    // labels of 0..3 are 1, 0, 1, 0
    writeFileSync(logPath(dir, 'thr', 0.25), header + row(0, 1, 0.25) + row(1, 0, 0.6) + row(2, 0, 0.9) + row(3, -1, 0));
    writeFileSync(logPath(dir, 'thr', 0.5), header + row(0, 1, 1.1) + row(1, 1, 0.5) + row(2, 1, 0.2) + row(3, 0, 0.4));
    const never: BaseClassifier = () => {
      throw new Error('finished images must not be recomputed');
    };
    const n = 1000;
    const alpha = 0.001;
    await expect(runCertify({ ...common, n, alpha, bases: { thr: () => never }, sigmas: [0.25, 0.5], count: 4, outDir: dir })).rejects.toThrow(LogSettingsMismatchError);
    for (const sigma of [0.25, 0.5]) {
      const settings = logSettings({ dataset: dataset.name, base: 'thr', sigma, n0: common.n0, n, alpha, seed: common.seed });
      writeFileSync(settingsPath(logPath(dir, 'thr', sigma)), JSON.stringify(settings));
    }
    const { report, files } = await runCertify({ ...common, n, alpha, bases: { thr: () => never }, sigmas: [0.25, 0.5], count: 4, outDir: dir });
    const acc = (sigma: number | 'best') => report.curves.find((c) => c.sigma === sigma)?.accuracy;
    //                      r = 0     0.25  0.5   0.75  1.0   1.25 ... 2.0
    expect(acc(0.25)).toEqual([0.5, 0.5, 0.25, 0, 0, 0, 0, 0, 0]);
    expect(acc(0.5)).toEqual([0.75, 0.5, 0.25, 0.25, 0.25, 0, 0, 0, 0]);
    expect(acc('best')).toEqual([0.75, 0.5, 0.25, 0.25, 0.25, 0, 0, 0, 0]);
    expect(report.curves.find((c) => c.sigma === 0.5)?.maxRadius).toBeCloseTo(maxCertifiableRadius(0.5, n, alpha), 12);
    const md = readFileSync(files.markdown, 'utf8');
    expect(md).toContain('| thr | best | 4 | 0.750 | 0.500 | 0.250 | 0.250 | 0.250 | 0.000 | 0.000 | 0.000 | 0.000 |');
    expect(md).toContain(`| thr | 0.5 | 4 | 0.750 | 0.500 | 0.250 | 0.250 | 0.250 | 0.000 | 0.000 | 0.000 | 0.000 | ${maxCertifiableRadius(0.5, n, alpha).toFixed(2)} |`);
    // by hand: 0.001^(1/1000) = 0.993116, PhiInv(0.993116) = 2.463263; times sigma
    expect(md).toMatch(/\| thr \| 0\.25 \| 4 \|.* \| 0\.62 \|\n/);
    expect(md).toMatch(/\| thr \| 0\.5 \| 4 \|.* \| 1\.23 \|\n/);
  });
});

describe('certify on worker threads, built-in bases', () => {
  // a private copy of the shipped classifier: a training run may rewrite models/ while these tests run
  const models = tmp();
  const before = process.env.ADVPURIFY_MODELS;
  beforeAll(() => {
    mkdirSync(join(models, 'fashion-mnist'));
    for (const ext of ['json', 'bin']) copyFileSync(join(modelsDir(), 'fashion-mnist', `classifier.${ext}`), join(models, 'fashion-mnist', `classifier.${ext}`));
    process.env.ADVPURIFY_MODELS = models; // worker threads inherit it
  });
  afterAll(() => {
    if (before === undefined) delete process.env.ADVPURIFY_MODELS;
    else process.env.ADVPURIFY_MODELS = before;
  });

  const fixture = loadFixture();
  const run = (outDir: string, workers: number, count: number) =>
    runCertify({ dataset: fixture, bases: { noisy: { kind: 'noisy', dataset: 'fashion-mnist' } }, sigmas: [0.25, 0.5], n0: 10, n: 40, alpha: 0.01, batchSize: 25, seed: 7, count, outDir, workers });
  const rowsOf = (dir: string, sigma: number) => readLog(logPath(dir, 'noisy', sigma)).sort((a, b) => a.index - b.index);
  const strip = (r: LogRow) => ({ ...r, seconds: 0 });

  it('gives the same rows on 2 worker threads as in one thread, and resumes', async () => {
    const one = tmp();
    const two = tmp();
    await run(one, 1, 4);
    await run(two, 2, 2);
    const first = rowsOf(two, 0.25);
    expect(first.map((r) => r.index)).toEqual([0, 1]);
    await run(two, 2, 4); // resumes: only images 2 and 3 are new
    for (const sigma of [0.25, 0.5]) {
      const rows = rowsOf(two, sigma);
      expect(rows.map((r) => r.index)).toEqual([0, 1, 2, 3]);
      expect(rows.map(strip)).toEqual(rowsOf(one, sigma).map(strip));
    }
    expect(rowsOf(two, 0.25).slice(0, 2)).toEqual(first); // same seconds: not recomputed
  });

  it('on worker threads, does not hand out an image another run sharing the log has certified meanwhile', async () => {
    const other = tmp();
    await runCertify({ dataset: fixture, bases: { noisy: { kind: 'noisy', dataset: 'fashion-mnist' } }, sigmas: [0.25], n0: 10, n: 40, alpha: 0.01, batchSize: 25, seed: 7, indices: [3], outDir: other, workers: 1 });
    const otherLine = readFileSync(logPath(other, 'noisy', 0.25), 'utf8').trimEnd().split('\n')[1];
    const dir = tmp();
    let injected = false;
    const r = await runCertify({
      dataset: fixture, bases: { noisy: { kind: 'noisy', dataset: 'fashion-mnist' } }, sigmas: [0.25], n0: 10, n: 40, alpha: 0.01, batchSize: 25, seed: 7, count: 4, outDir: dir, workers: 2,
      // when the first image is done (0 or 1; 2 and 3 still queued), "another process" logs image 3
      onProgress: () => {
        if (!injected) appendFileSync(logPath(dir, 'noisy', 0.25), otherLine + '\n');
        injected = true;
      },
    });
    const lines = readFileSync(logPath(dir, 'noisy', 0.25), 'utf8').trimEnd().split('\n').slice(1);
    expect(lines.map((l) => Number(l.split('\t')[0])).sort()).toEqual([0, 1, 2, 3]); // 3 not certified again
    expect(lines.filter((l) => l.startsWith('3\t'))).toEqual([otherLine]);
    expect(r.report.curves[0].images).toBe(4);
  });

  it('continues a log only under the settings and weights it was made with', async () => {
    const dir = tmp();
    await run(dir, 1, 1);
    const again = (over: Partial<Parameters<typeof runCertify>[0]>) =>
      runCertify({ dataset: fixture, bases: { noisy: { kind: 'noisy', dataset: 'fashion-mnist' } }, sigmas: [0.25, 0.5], n0: 10, n: 40, alpha: 0.01, batchSize: 25, seed: 7, count: 1, outDir: dir, ...over });
    await expect(again({ n: 80 })).rejects.toThrow(/n: 40 then, 80 now/);
    await expect(again({ alpha: 0.001 })).rejects.toThrow(LogSettingsMismatchError);
    await expect(again({ seed: 8 })).rejects.toThrow(/seed: 7 then, 8 now/);
    // other classifier weights (one byte changed): refused before anything is certified
    const bin = join(models, 'fashion-mnist', 'classifier.bin');
    const original = readFileSync(bin);
    const changed = Buffer.from(original);
    changed[100] ^= 1;
    writeFileSync(bin, changed);
    try {
      await expect(again({})).rejects.toThrow(/models: .* then, .* now/);
    } finally {
      writeFileSync(bin, original);
    }
    const same = await again({ count: 2 }); // the same settings resume
    expect(same.report.curves.find((c) => c.sigma === 0.25)?.images).toBe(2);
  });

  it('needs BaseSpecs, not functions, for worker threads', async () => {
    await expect(runCertify({ ...common, bases: { thr: () => thresholdBase({ n: 0 }) }, sigmas: [0.5], count: 2, outDir: tmp(), workers: 2 })).rejects.toThrow(/BaseSpec/);
  });

  it('the noisy base uses classifier-noise<sigma> where there is one, else the plain classifier with a note', () => {
    const dir = join(models, 'fashion-mnist');
    for (const ext of ['json', 'bin']) writeFileSync(join(dir, `classifier-noise0.5.${ext}`), '');
    const noisy = { kind: 'noisy', dataset: 'fashion-mnist' } as const;
    expect(baseModels(noisy, 0.5)).toEqual({ classifier: 'classifier-noise0.5', diffusion: false });
    const m = baseModels(noisy, 0.25);
    expect(m.classifier).toBe('classifier');
    expect(m.note).toMatch(/no classifier-noise0\.25 .*--noise-sigma 0\.25 --variant classifier-noise0\.25/);
  });

  it('missing models: a one-line error naming the command that trains them', async () => {
    const empty = tmp();
    const dds = { kind: 'dds', dataset: 'mnist' } as const;
    process.env.ADVPURIFY_MODELS = empty;
    try {
      expect(() => baseModels(dds, 0.5)).toThrow(/no mnist diffusion .*`advpurify train diffusion --dataset mnist`/);
    } finally {
      process.env.ADVPURIFY_MODELS = models;
    }
    const root = join(import.meta.dirname, '..');
    const args = ['--import', 'tsx', join(root, 'test', 'run-cli.ts'), 'certify', '--dataset', 'mnist', '--base', 'noisy', '--out', tmp()];
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, args, { cwd: root, env: { ...process.env, ADVPURIFY_MODELS: empty, ADVPURIFY_QUIET: '1' } }, (err, _out, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }));
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no mnist classifier .*`advpurify train classifier --dataset mnist`/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
