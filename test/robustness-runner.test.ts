// `advpurify bench robustness`: reports on disk, resumption without recomputation, refusal to mix
// configurations, the same rows from worker threads as in-process, and the cost report.
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, type Tensor4D } from '../src/backend/index.js';
import { modelsDir } from '../src/models/paths.js';
import { loadDefense, type DefenseSetup } from '../attacks/defenses.js';
import { purifyFlags } from '../attacks/bench/cli.js';
import { purifyRecord } from '../attacks/bench/run.js';
import { attackCost, logPath, runRobustness, type ImageRow, type RobustnessOptions } from '../attacks/bench/index.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-robustness-'));
// A frozen copy of the shipped classifier: logs are tied to the weights they were computed with.
const shipped = join(modelsDir(), 'fashion-mnist');
mkdirSync(join(dir, 'models', 'fashion-mnist'), { recursive: true });
for (const f of ['classifier.json', 'classifier.bin']) copyFileSync(join(shipped, f), join(dir, 'models', 'fashion-mnist', f));
const savedModels = process.env.ADVPURIFY_MODELS;
process.env.ADVPURIFY_MODELS = join(dir, 'models');
afterAll(() => {
  if (savedModels === undefined) delete process.env.ADVPURIFY_MODELS;
  else process.env.ADVPURIFY_MODELS = savedModels;
  rmSync(dir, { recursive: true, force: true });
});

let calls = 0;
/** The undefended classifier behind an identity "defence" that counts its forward passes. */
async function counting(): Promise<DefenseSetup> {
  const s = await loadDefense('none', { dataset: 'fashion-mnist' });
  return { ...s, defense: { randomized: false, forward: (x: Tensor4D) => (calls++, x.clone()) } };
}

const base = (out: string, extra: Partial<RobustnessOptions> = {}): RobustnessOptions => ({
  dataset: 'fashion-mnist', split: 'fixture', count: 4, norm: 'Linf', eps: [0.05, 0.1], defenses: ['none'], preset: 'quick',
  settings: { pgdSteps: 3, apgdSteps: 3, squareQueries: 10 }, batchSize: 2, outDir: out, build: counting, ...extra,
});

const rowsOf = (path: string): ImageRow[] => readFileSync(path, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l) as ImageRow);

describe('bench robustness runner', () => {
  const out = join(dir, 'run');

  it('writes per-image logs, JSON, Markdown and an SVG curve', async () => {
    const before = tf.memory().numTensors;
    const r = await runRobustness(base(out));
    expect(r.computed).toBe(8); // 4 images x 2 eps
    expect(calls).toBeGreaterThan(0);
    const rows = rowsOf(logPath(out, 'none'));
    expect(rows.map((x) => `${x.eps}/${x.index}`).sort()).toEqual(['0.05/0', '0.05/1', '0.05/2', '0.05/3', '0.1/0', '0.1/1', '0.1/2', '0.1/3']);
    for (const row of rows) {
      expect(Object.keys(row.attacks)).toEqual(['pgd', 'apgd', 'square']);
      if (!row.clean) expect(row.attacks.pgd).toBeNull();
    }
    const json = JSON.parse(readFileSync(r.files.json, 'utf8'));
    expect(json.results).toHaveLength(2);
    expect(json.results[0]).toMatchObject({ defense: 'none', eps: 0.05, images: 4 });
    for (const res of json.results) expect(res.robust).toBeLessThanOrEqual(res.clean);
    const md = readFileSync(r.files.markdown, 'utf8');
    expect(md).toMatch(/\| defence \| eps \| images \| clean \| robust \(1 draw\) \| worst-of-k \|/);
    expect(md).toMatch(/\| none \| 0\.1 \| 4 \|/);
    const svg = readFileSync(r.files.svg, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('<polyline');
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    // the classifier's weights stay loaded for the run; nothing else survives it
    expect(tf.memory().numTensors - before).toBeLessThan(40);
  });

  it('a second run resumes from the logs without recomputing; new images extend it', async () => {
    const first = JSON.parse(readFileSync(join(out, 'robustness.json'), 'utf8'));
    calls = 0;
    const again = await runRobustness(base(out));
    expect(again.computed).toBe(0);
    expect(calls).toBe(0);
    expect(again.report.results).toEqual(first.results);
    // a run killed mid-write leaves a partial line: it is dropped and that image recomputed
    appendFileSync(logPath(out, 'none'), '{"eps":0.1,"index":4,"lab');
    const more = await runRobustness(base(out, { count: 5, eps: [0.1] }));
    expect(more.computed).toBe(1);
    expect(rowsOf(logPath(out, 'none'))).toHaveLength(9);
  });

  it('runs sharing a directory: --reverse takes the batches from the end, and each leaves out what another has logged', async () => {
    const opts = { count: 4, eps: [0.1], batchSize: 1 };
    const strip = (rows: ImageRow[]) => rows.map(({ seconds: _s, ...r }) => r);
    const ref = join(dir, 'shared-ref');
    const whole = await runRobustness(base(ref, opts));
    // a reverse run writes its batches last image first, with the forward run's seeds: the same rows
    const rev = join(dir, 'shared-rev');
    await runRobustness(base(rev, { ...opts, reverse: true }));
    expect(rowsOf(logPath(rev, 'none')).map((r) => r.index)).toEqual([3, 2, 1, 0]);
    expect(strip(rowsOf(logPath(rev, 'none'))).sort((a, b) => a.index - b.index)).toEqual(strip(rowsOf(logPath(ref, 'none'))));
    // another run logs images 3 and 2 while this one is on its first batch: it computes only 0 and 1, and its
    // report counts all four
    const o = join(dir, 'shared');
    const theirs = readFileSync(logPath(ref, 'none'), 'utf8').trim().split('\n').slice(1).filter((l) => [2, 3].includes((JSON.parse(l) as ImageRow).index));
    let appended = false;
    const mine = await runRobustness(base(o, {
      ...opts,
      onProgress: () => {
        if (!appended) appendFileSync(logPath(o, 'none'), theirs.join('\n') + '\n');
        appended = true;
      },
    }));
    expect(mine.computed).toBe(2);
    expect(rowsOf(logPath(o, 'none')).map((r) => r.index)).toEqual([0, 2, 3, 1]); // theirs landed after its first batch
    const untimed = (r: typeof whole) => r.report.results.map(({ secondsPerImage: _t, ...x }) => x);
    expect(untimed(mine)).toEqual(untimed(whole));
  });

  it('refuses to continue a log written with other attack settings', async () => {
    await expect(runRobustness(base(out, { settings: { pgdSteps: 4, apgdSteps: 3, squareQueries: 10 } }))).rejects.toThrow(/different settings \(settings\)/);
  });

  it('a run of one defence keeps the other defences logged in its directory in the report, not logs of other settings', async () => {
    const o = join(dir, 'together');
    const both = await runRobustness(base(o, { defenses: ['none', 'diffpure'], eps: [0.1], count: 2, purify: { tStar: 300 } }));
    // a log of the same defence family under other attack settings, left in the directory by hand
    const stray = join(o, 'stray');
    await runRobustness(base(stray, { defenses: ['jpeg'], eps: [0.1], count: 2, settings: { pgdSteps: 4, apgdSteps: 3, squareQueries: 10 } }));
    copyFileSync(logPath(stray, 'jpeg'), logPath(o, 'jpeg'));
    calls = 0;
    const one = await runRobustness(base(o, { defenses: ['none'], eps: [0.1], count: 2 }));
    expect(calls).toBe(0);
    expect(one.report.results.map((r) => r.defense)).toEqual(['none', 'diffpure']);
    expect(one.report.results).toEqual(both.report.results); // diffpure described from its own log (t* 300)
    expect(one.report.results[1].attackNote).toContain('t*=300');
    const md = readFileSync(one.files.markdown, 'utf8');
    expect(md).toMatch(/\| diffpure \| 0\.1 \| 2 \|/);
    expect(md).not.toMatch(/\| jpeg \|/);
  });

  it('logs the resolved purifier settings: explicit defaults resume the same log, a log from before a default changed is refused', async () => {
    const o = join(dir, 'resolved');
    await runRobustness(base(o, { defenses: ['diffpure'], eps: [0.1], count: 2 }));
    const path = logPath(o, 'diffpure');
    const header = JSON.parse(readFileSync(path, 'utf8').split('\n')[0]);
    expect(header.config.purify).toEqual({ tStar: 450, steps: 5, sampler: 'ddpm' });
    calls = 0;
    await runRobustness(base(o, { defenses: ['diffpure'], eps: [0.1], count: 2, purify: { tStar: 450, steps: 5 } }));
    expect(calls).toBe(0); // the same settings spelled out: nothing recomputed
    await expect(runRobustness(base(o, { defenses: ['diffpure'], eps: [0.1], count: 2, purify: { tStar: 100 } }))).rejects.toThrow(/different settings \(purify\)/);
    // the purifier deployed with draws: 3 (majority vote) is another defence: its rows never mix with one draw's
    await expect(runRobustness(base(o, { defenses: ['diffpure'], eps: [0.1], count: 2, purify: { draws: 3 } }))).rejects.toThrow(/different settings \(purify\)/);
    const voted = join(dir, 'voted');
    await runRobustness(base(voted, { defenses: ['diffpure'], eps: [0.1], count: 1, purify: { draws: 3 } }));
    expect(JSON.parse(readFileSync(logPath(voted, 'diffpure'), 'utf8').split('\n')[0]).config.purify).toEqual({ tStar: 450, steps: 5, sampler: 'ddpm', votes: 3 });
    expect(readFileSync(join(voted, 'robustness.md'), 'utf8')).toContain('majority vote of 3 draws');
    // a log written when the header held the raw options ({} under the old default t* 100)
    const lines = readFileSync(path, 'utf8').split('\n');
    writeFileSync(path, [JSON.stringify({ ...header, config: { ...header.config, purify: {} } }), ...lines.slice(1)].join('\n'));
    await expect(runRobustness(base(o, { defenses: ['diffpure'], eps: [0.1], count: 2 }))).rejects.toThrow(/different settings \(purify\)/);
  });

  it('a defence in front of another classifier variant (@variant) loads that variant, logs its weights, and bad specs are refused', async () => {
    const m = join(dir, 'models', 'fashion-mnist');
    // a second variant with different weights: the masked classifier, saved as classifier-other
    for (const ext of ['json', 'bin']) copyFileSync(join(shipped, `classifier-masked.${ext}`), join(m, `classifier-other.${ext}`));
    const o = join(dir, 'variant');
    const opts = { eps: [0.1], count: 2, attacks: ['pgd' as const], build: undefined };
    await runRobustness(base(o, { ...opts, defenses: ['none', 'none@classifier-other'] }));
    const header = (d: string) => JSON.parse(readFileSync(logPath(o, d), 'utf8').split('\n')[0]);
    expect(Object.keys(header('none').config.models)).toEqual(['classifier']);
    expect(Object.keys(header('none@classifier-other').config.models)).toEqual(['classifier-other']);
    expect(header('none@classifier-other').config.models['classifier-other']).not.toBe(header('none').config.models.classifier);
    // the rows are the variant's: its clean correctness on each image
    const { loadClassifier } = await import('../src/purify/index.js');
    const { loadFixture } = await import('../src/data/index.js');
    const other = await loadClassifier('fashion-mnist', 'classifier-other');
    const fixture = loadFixture();
    const x = tf.tensor4d(fixture.images.slice(0, 2 * 784), [2, 28, 28, 1]);
    const pred = Array.from(tf.tidy(() => other.predict(x).argMax(-1).dataSync()));
    x.dispose();
    const rows = rowsOf(logPath(o, 'none@classifier-other')).sort((a, b) => a.index - b.index);
    expect(rows.map((r) => r.clean)).toEqual(pred.map((p, i) => (p === fixture.labels[i] ? 1 : 0)));
    await expect(runRobustness(base(o, { ...opts, defenses: ['none@nonsense'] }))).rejects.toThrow(/classifier variant/);
    await expect(runRobustness(base(o, { ...opts, defenses: ['adv@classifier'] }))).rejects.toThrow(/adv is the classifier-adv variant/);
    await expect(runRobustness(base(o, { ...opts, defenses: ['none@classifier-missing'] }))).rejects.toThrow(/classifier-missing/);
  });

  it('worker threads log the same rows as an in-process run', async () => {
    const opts = { eps: [0.1], count: 2, batchSize: 1, attacks: ['pgd' as const], build: undefined };
    await runRobustness(base(join(dir, 'in'), opts));
    await runRobustness(base(join(dir, 'wk'), { ...opts, workers: 2 }));
    const strip = (rs: ImageRow[]) => rs.map(({ seconds, ...r }) => r).sort((a, b) => a.index - b.index);
    expect(strip(rowsOf(logPath(join(dir, 'wk'), 'none')))).toEqual(strip(rowsOf(logPath(join(dir, 'in'), 'none'))));
    expect(existsSync(join(dir, 'wk', 'robustness.md'))).toBe(true);
  });

  it('reports the cost per image of each attack from measured model calls', async () => {
    const r = await attackCost({ dataset: 'fashion-mnist', defenses: ['none'], preset: 'standard', batchSize: 2, reps: 1, build: counting });
    expect(r.rows.map((c) => c.attack)).toEqual(['pgd', 'apgd', 'square']);
    const pgdRow = r.rows[0];
    expect(pgdRow).toMatchObject({ gradients: 50, forwards: 3 });
    expect(r.rows[2]).toMatchObject({ gradients: 0, forwards: 1002 });
    const p = r.primitives[0];
    expect(pgdRow.secondsPerImage).toBeCloseTo(50 * p.gradient + 3 * p.forward, 6);
    expect(p.gradient).toBeGreaterThan(0);
  });
});

describe('bench robustness: purifier flags', () => {
  it('--restorer picks the restoration design, and the log records it (cold by default)', () => {
    const o = purifyFlags({ restorer: 'x0', 't-star': '450' });
    expect(o).toEqual({ restorer: 'x0', tStar: 450 });
    expect(purifyRecord('restore', o)).toMatchObject({ restorer: 'x0', tStar: 450 });
    expect(purifyRecord('restore', purifyFlags({}))).toMatchObject({ restorer: 'cold' });
  });
});
