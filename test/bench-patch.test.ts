/**
 * `advpurify bench patch` at smoke scale (2 fixture images, one 4x4 size, a few attack steps, the real
 * shipped models): what its users rely on is that the reports land on disk with one row per image, that
 * an interrupted run resumes from its logs without recomputing, that the saved adversarial images keep the
 * patch inside its box and in [0,1], and that localisation IoU is reported against the true box.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tf } from '../src/backend/index.js';
import { loadFixture, subset } from '../src/data/index.js';
import type { CnnClassifier } from '../src/models/classifier.js';
import type { DiffusionModel } from '../src/models/diffusion-model.js';
import { loadClassifier, loadDiffusionModel } from '../src/purify/index.js';
import { benchPatch, runPatchBench, type DefenceName, type PatchAttackName, type PatchBenchOptions } from '../src/purify/patch/bench.js';
import { LogSettingsMismatchError } from '../src/util/tsv-log.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-patch-bench-'));
const SLOW = 1_800_000; // seconds on an idle machine, many minutes on a starved one

describe('advpurify bench patch (smoke scale)', () => {
  let clf: CnnClassifier;
  let model: DiffusionModel;
  let opts: PatchBenchOptions;
  beforeAll(async () => {
    clf = await loadClassifier('fashion-mnist');
    model = await loadDiffusionModel('fashion-mnist');
    const fx = loadFixture();
    opts = {
      test: subset(fx, [0, 1], 'fixture-test'), train: subset(fx, Array.from({ length: 8 }, (_, i) => 500 + i), 'fixture-train'),
      model, classifier: (x) => clf.predict(x), outDir: dir, count: 2, sizes: [4], defences: ['none', 'patch'],
      steps: 3, candidates: 2, restarts: 1, eot: 1, universalSteps: 2, universalBatch: 4, chunk: 2, seed: 5, gridExamples: 2,
      patch: { inpaint: { steps: 4, resample: 1 } },
    };
  });
  afterAll(() => {
    clf?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes JSON, Markdown, SVG and the picture grid, one logged row per image and (attack, defence)', async () => {
    const before = tf.memory().numTensors;
    const r = await runPatchBench(opts);
    expect(tf.memory().numTensors).toBe(before);
    for (const f of r.files) expect(statSync(f).size).toBeGreaterThan(0);
    expect(r.files.map((f) => f.slice(dir.length + 1)).sort()).toEqual(['patch-bench.json', 'patch-bench.md', 'patch-bench.svg', 'patch-grid.png']);
    for (const log of ['clean-none', 'clean-patch', 'perimage-none-s4', 'perimage-patch-s4', 'universal-none-s4', 'universal-patch-s4']) {
      const lines = readFileSync(join(dir, `${log}.tsv`), 'utf8').trim().split('\n');
      expect(lines[0].split('\t')).toEqual(['index', 'label', 'prediction', 'correct', 'detected', 'iou', 'top', 'left', 'size', 'seconds']);
      expect(lines.slice(1).map((l) => Number(l.split('\t')[0])).sort()).toEqual([0, 1]);
      for (const l of lines.slice(1)) {
        const v = l.split('\t').map(Number);
        // the undefended model has no localiser (detected/iou -1); the patch defence reports IoU in [0,1] for attacked images
        if (log.includes('-none')) expect([v[4], v[5]]).toEqual([-1, -1]);
        else if (!log.startsWith('clean')) expect(v[5]).toBeGreaterThanOrEqual(0), expect(v[5]).toBeLessThanOrEqual(1);
        if (!log.startsWith('clean')) expect(v[8]).toBe(4); // the true box is logged with its size
      }
    }
    const json = JSON.parse(readFileSync(join(dir, 'patch-bench.json'), 'utf8'));
    expect(json.summaries.length).toBeGreaterThanOrEqual(6);
    expect(r.markdown).toMatch(/perimage/);
    // the certified baseline: 4x4 patches, stride 5, masks of side 8 (6 per axis asked, 5 distinct), 325 masked copies per image
    expect(json.patchcleanser).toHaveLength(1);
    expect(json.patchcleanser[0]).toMatchObject({ size: 4, masks: 25, evaluations: 325, n: 2 });
    expect(json.patchcleanser[0].certifiedAccuracy).toBeLessThanOrEqual(json.patchcleanser[0].cleanAccuracy);
    expect(r.markdown).toMatch(/\| 4x4 \| 25 \| 325 \| 2 \| [\d.]+% \| [\d.]+% \|/);
    const pc = readFileSync(join(dir, 'patchcleanser-s4.tsv'), 'utf8').trim().split('\n');
    expect(pc[0]).toBe('index\tlabel\tprediction\tcorrect\tcertified\tseconds');
    expect(pc).toHaveLength(3);
    const svgText = readFileSync(join(dir, 'patch-bench.svg'), 'utf8');
    expect(svgText).toMatch(/patchcleanser \(certified\)/);
    // every legend label ends inside the picture (at ~7 px a character), none clipped at its right edge
    const width = Number(/<svg[^>]* width="(\d+(?:\.\d+)?)"/.exec(svgText)![1]);
    const labels = [...svgText.matchAll(/<text x="([\d.]+)" y="[\d.]+">([^<]+)<\/text>/g)];
    expect(labels.map((l) => l[2])).toContain('patchcleanser (certified)');
    for (const [, x, label] of labels) expect(Number(x) + 7 * label.length, label).toBeLessThanOrEqual(width);
  }, SLOW);

  it('saved adversarial images change only the pixels inside their box and stay in [0,1]', () => {
    const saved = JSON.parse(readFileSync(join(dir, 'adv-perimage-patch-s4-0.json'), 'utf8')) as { idx: number[]; boxes: { top: number; left: number; size: number }[]; x: number[] };
    const clean = opts.test.images;
    expect(saved.idx).toEqual([0, 1]);
    saved.idx.forEach((j, i) => {
      const b = saved.boxes[i];
      expect(b.size).toBe(4);
      for (let p = 0; p < 784; p++) {
        const v = saved.x[i * 784 + p];
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
        const [r, c] = [Math.floor(p / 28), p % 28];
        const inside = r >= b.top && r < b.top + 4 && c >= b.left && c < b.left + 4;
        if (!inside) expect(Math.abs(v - clean[j * 784 + p])).toBeLessThan(1e-6);
      }
    });
  });

  it('a rerun resumes from the logs: nothing is recomputed, the logs are unchanged, the report is rewritten', async () => {
    const logs = ['perimage-patch-s4.tsv', 'universal-none-s4.tsv', 'universal-patch-s4.json'].map((f) => join(dir, f));
    const before = logs.map((f) => (existsSync(f) ? readFileSync(f, 'utf8') : ''));
    const t0 = performance.now();
    const r = await runPatchBench(opts);
    const seconds = (performance.now() - t0) / 1000;
    expect(logs.map((f) => (existsSync(f) ? readFileSync(f, 'utf8') : ''))).toEqual(before);
    expect(r.files.length).toBe(4);
    expect(seconds).toBeLessThan(60); // reading logs and writing reports, no attack
  }, SLOW);

  it('runs sharing a directory skip the images the other has logged; worker threads give the same rows as this thread', async () => {
    // the patch defence (randomized, with the evasion term), one image per chunk
    const alone = mkdtempSync(join(tmpdir(), 'advpurify-patch-alone-'));
    const shared = mkdtempSync(join(tmpdir(), 'advpurify-patch-shared-'));
    const threaded = mkdtempSync(join(tmpdir(), 'advpurify-patch-workers-'));
    const cols = (d: string) => readFileSync(join(d, 'perimage-patch-s4.tsv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t').slice(0, 9).join(' ')).sort();
    try {
      let calls = 0;
      const one = {
        ...opts, defences: ['patch'] as DefenceName[], attacks: ['perimage'] as PatchAttackName[], chunk: 1, patchcleanser: false as const,
        classifier: (x: tf.Tensor4D) => (calls++, clf.predict(x)),
      };
      await runPatchBench({ ...one, outDir: alone });
      const callsAlone = calls;
      // two runs at once from opposite ends: each image is attacked and logged once (as many classifier calls
      // as one run alone makes), with the rows one run alone writes
      calls = 0;
      await Promise.all([runPatchBench({ ...one, outDir: shared, indices: [0, 1] }), runPatchBench({ ...one, outDir: shared, indices: [1, 0] })]);
      expect(calls).toBe(callsAlone);
      expect(cols(shared)).toEqual(cols(alone));
      // the same run on two worker threads (each loads the fixture and the shipped models itself)
      const { test: _t, train: _tr, model: _m, classifier: _c, outDir: _o, ...plain } = one;
      const r = await benchPatch({ ...plain, split: 'fixture', out: threaded, workers: 2, indices: [0, 1] });
      expect(r.files.length).toBe(4);
      expect(cols(threaded)).toHaveLength(2);
      expect(cols(threaded)).toEqual(cols(alone));
      // down to the adversarial pixels (kept for the picture grid): the same attack, not merely the same outcome
      for (const i of [0, 1]) {
        const adv = (d: string) => readFileSync(join(d, `adv-perimage-patch-s4-${i}.json`), 'utf8');
        expect(adv(threaded)).toBe(adv(alone));
        expect(adv(shared)).toBe(adv(alone));
      }
    } finally {
      for (const d of [alone, shared, threaded]) rmSync(d, { recursive: true, force: true });
    }
  }, SLOW);

  it('a universal patch another live run has claimed is left to it (waited for, not trained twice); a dead run\'s claim is taken over', async () => {
    // needs the universal none 4x4 patch the first test trained (same settings)
    const made = join(dir, 'universal-none-s4.json');
    const shared = mkdtempSync(join(tmpdir(), 'advpurify-patch-claim-'));
    const one = { ...opts, defences: ['none'] as DefenceName[], attacks: ['universal'] as PatchAttackName[], patchcleanser: false as const, claimPollMs: 100 };
    try {
      // "another run": a live process that holds the claim and writes the patch (whole, by rename) after a second
      const lock = join(shared, 'universal-none-s4.json.lock');
      const other = spawn('sh', ['-c', `sleep 1; cp '${made}' '${shared}/p.tmp'; mv '${shared}/p.tmp' '${join(shared, 'universal-none-s4.json')}'; sleep 1`], { stdio: 'ignore' });
      writeFileSync(lock, JSON.stringify({ pid: other.pid, host: hostname(), started: Date.now() }));
      const exited = new Promise((r) => other.on('exit', r));
      const said: string[] = [];
      const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (said.push(String(chunk)), true));
      const t0 = performance.now();
      try {
        await runPatchBench({ ...one, outDir: shared });
      } finally {
        spy.mockRestore();
      }
      expect(performance.now() - t0).toBeGreaterThan(900); // it waited for the other run's patch
      expect(said.join('')).toMatch(/waiting for another run to finish the universal 4x4 patch against none/);
      expect(said.join('')).not.toMatch(/training the universal/);
      expect(readFileSync(join(shared, 'universal-none-s4.json'), 'utf8')).toBe(readFileSync(made, 'utf8')); // and did not retrain it
      expect(existsSync(lock)).toBe(true); // nor touch the other run's claim
      expect(readFileSync(join(shared, 'universal-none-s4.tsv'), 'utf8').trim().split('\n')).toHaveLength(3);
      await exited;
      // a claim left by a run that died: taken over, the patch trained here, the claim released
      rmSync(join(shared, 'universal-none-s4.json'));
      rmSync(join(shared, 'universal-none-s4.tsv'));
      said.length = 0;
      const spy2 = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (said.push(String(chunk)), true));
      try {
        await runPatchBench({ ...one, outDir: shared });
      } finally {
        spy2.mockRestore();
      }
      expect(said.join('')).toMatch(/training the universal 4x4 patch against none/);
      expect(readFileSync(join(shared, 'universal-none-s4.json'), 'utf8')).toBe(readFileSync(made, 'utf8')); // same seed, same patch
      expect(existsSync(lock)).toBe(false);
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  }, SLOW);

  it('refuses to continue a log or reuse a universal patch made with another budget or other weights', async () => {
    await expect(runPatchBench({ ...opts, steps: 4 })).rejects.toThrow(/perimage-none-s4\.tsv was made with other settings \(perimage: .*"steps":3.* then, .*"steps":4.* now\)/);
    await expect(runPatchBench({ ...opts, attacks: ['universal'], universalSteps: 3 })).rejects.toThrow(LogSettingsMismatchError);
    // a new diffusion model invalidates the defended logs only: the undefended clean log still resumes
    await expect(runPatchBench({ ...opts, defences: ['patch'], models: { diffusion: 'another' } })).rejects.toThrow(/models: .*"diffusion":"unrecorded".* then, .*"another".* now/);
    const r = await runPatchBench({ ...opts, defences: ['none'], attacks: [], models: { diffusion: 'another' } });
    expect(r.files.length).toBe(4);
  }, SLOW);
});
