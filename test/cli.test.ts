/** The `advpurify` command line, run as a user would (a child process on real image files). */
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadFixture } from '../src/data/index.js';

const root = join(import.meta.dirname, '..');
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(root, 'test', 'run-cli.ts'), ...args], { cwd: root, env: { ...process.env, ADVPURIFY_QUIET: '1' } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('advpurify CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'advpurify-cli-'));
  const input = join(dir, 'in.png');
  beforeAll(async () => {
    const fx = loadFixture();
    const px = Buffer.from(fx.images.subarray(0, 784).map((v) => Math.round(v * 255)));
    writeFileSync(input, await sharp(px, { raw: { width: 28, height: 28, channels: 1 } }).resize(64, 64).png().toBuffer());
  });

  it('purify writes a PNG and reports JSON', async () => {
    const out = join(dir, 'out.png');
    const r = await cli(['purify', input, '-o', out, '--mode', 'oneshot', '--sigma', '0.25', '--seed', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.mode).toBe('oneshot');
    expect(existsSync(out)).toBe(true);
    const meta = await sharp(readFileSync(out)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 28, 28]);
  });

  it('classify prints a label and probabilities that sum to 1', async () => {
    const r = await cli(['classify', input, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.label).toBeGreaterThanOrEqual(0);
    expect(res.label).toBeLessThan(10);
    expect(res.probabilities.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 4);
  });

  it('bad input: a clear one-line error and a non-zero exit, never a stack trace', async () => {
    const junk = join(dir, 'junk.png');
    writeFileSync(junk, 'not an image at all');
    const r1 = await cli(['purify', junk, '-o', join(dir, 'x.png')]);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/DECODE_FAILED/);
    expect(r1.stderr).not.toMatch(/\n\s+at /);
    const r2 = await cli(['purify', input, '-o', join(dir, 'y.png'), '--steps', '0']);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/BAD_OPTION.*steps/);
    const r3 = await cli(['purify', input, '--bogus']);
    expect(r3.code).toBe(2);
    const r4 = await cli(['frobnicate']);
    expect(r4.code).toBe(2);
    // a long benchmark's flags are checked before anything loads
    const r5 = await cli(['bench', 'patch', '--sizes', '6,x']);
    expect([r5.code, r5.stderr]).toEqual([2, expect.stringMatching(/USAGE.*--sizes must be a number, got "x"/)]);
    const r6 = await cli(['bench', 'patch', '--indices', '9-3,5']);
    expect([r6.code, r6.stderr]).toEqual([2, expect.stringMatching(/USAGE.*--indices names an index twice/)]);
    // consistency regularization only regularizes Gaussian-noise training
    const r7 = await cli(['train', 'classifier', '--dataset', 'mnist', '--consistency', '5', '--out', join(dir, 'never')]);
    expect([r7.code, r7.stderr]).toEqual([2, expect.stringMatching(/USAGE.*--consistency.*--noise-sigma/)]);
    // SmoothAdv attacks the smoothed classifier: it needs the noise, and it is not the classifier PGD of --adv-eps
    const r7b = await cli(['train', 'classifier', '--dataset', 'mnist', '--smooth-adv', '1', '--out', join(dir, 'never')]);
    expect([r7b.code, r7b.stderr]).toEqual([2, expect.stringMatching(/USAGE.*--smooth-adv.*--noise-sigma/)]);
    const r7c = await cli(['train', 'classifier', '--dataset', 'mnist', '--smooth-adv', '1', '--adv-eps', '0.1', '--noise-sigma', '0.5', '--out', join(dir, 'never')]);
    expect([r7c.code, r7c.stderr]).toEqual([2, expect.stringMatching(/USAGE.*exclude each other/)]);
    expect(existsSync(join(dir, 'never.json'))).toBe(false);
    // a base whose weights are not shipped names the file and the command that trains it
    const r8 = await cli(['certify', '--dataset', 'mnist', '--base', 'consistency', '--sigma', '0.3', '--count', '1', '--out', join(dir, 'cert')]);
    expect(r8.code).toBe(1);
    expect(r8.stderr).toMatch(/classifier-consistency0\.3.*--noise-sigma 0\.3 --consistency/);
    expect(r8.stderr).not.toMatch(/\n\s+at /);
    // denoised smoothing's fine-tuned base: its own noise (not --noise-sigma), one augmentation at a time, named weights
    const r9 = await cli(['train', 'classifier', '--dataset', 'mnist', '--purify-sigma', '0.5', '--noise-sigma', '0.5', '--out', join(dir, 'never')]);
    expect([r9.code, r9.stderr]).toEqual([2, expect.stringMatching(/USAGE.*--purify-sigma adds its own noise/)]);
    const r10 = await cli(['train', 'classifier', '--dataset', 'mnist', '--purify-sigma', '0.5', '--purify-aug', '450', '--out', join(dir, 'never')]);
    expect([r10.code, r10.stderr]).toEqual([2, expect.stringMatching(/USAGE.*exclude each other/)]);
    const r11 = await cli(['train', 'classifier', '--dataset', 'mnist', '--purify-sigma', '3', '--out', join(dir, 'never')]);
    expect([r11.code, r11.stderr]).toEqual([2, expect.stringMatching(/USAGE.*--purify-sigma must be a noise level in \(0, 2\]/)]);
    expect(existsSync(join(dir, 'never.json'))).toBe(false);
    const r12 = await cli(['certify', '--dataset', 'mnist', '--base', 'dds-ft', '--sigma', '0.3', '--count', '1', '--out', join(dir, 'cert')]);
    expect(r12.code).toBe(1);
    expect(r12.stderr).toMatch(/classifier-dds0\.3.*--purify-sigma 0\.3 --init models\/mnist\/classifier/);
    // consistency over denoised copies: every row denoised, and its own base name and weights
    const r13 = await cli(['train', 'classifier', '--dataset', 'mnist', '--purify-sigma', '0.5', '--consistency', '5', '--purify-fraction', '0.5', '--out', join(dir, 'never')]);
    expect([r13.code, r13.stderr]).toEqual([2, expect.stringMatching(/USAGE.*--consistency with --purify-sigma denoises every row/)]);
    expect(existsSync(join(dir, 'never.json'))).toBe(false);
    const r14 = await cli(['certify', '--dataset', 'mnist', '--base', 'dds-cons', '--sigma', '0.3', '--count', '1', '--out', join(dir, 'cert')]);
    expect(r14.code).toBe(1);
    expect(r14.stderr).toMatch(/classifier-dds-cons0\.3.*--purify-sigma 0\.3 --consistency 5 --init models\/mnist\/classifier-dds0\.3 --variant/);
    // the restore-aware classifier: one augmentation at a time, restore's own settings, and a clear error where no
    // restoration model ships (MNIST), before any training starts
    const r15 = await cli(['train', 'classifier', '--dataset', 'fashion-mnist', '--restore-aug', '--purify-aug', '450', '--out', join(dir, 'never')]);
    expect([r15.code, r15.stderr]).toEqual([2, expect.stringMatching(/USAGE.*--restore-aug .*excludes --purify-aug and --purify-sigma/)]);
    const r16 = await cli(['train', 'classifier', '--dataset', 'fashion-mnist', '--restore-aug', '--purify-steps', '3', '--out', join(dir, 'never')]);
    expect([r16.code, r16.stderr]).toEqual([2, expect.stringMatching(/USAGE.*drop --purify-steps/)]);
    const r17 = await cli(['train', 'classifier', '--dataset', 'mnist', '--restore-aug', '--out', join(dir, 'never'), '--checkpoint', join(dir, 'never.ckpt')]);
    expect(r17.code).toBe(1);
    expect(r17.stderr).toMatch(/restoration weights .*advpurify train restore/);
    expect(r17.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(dir, 'never.json'))).toBe(false);
    // the denoiser of denoised smoothing is trained for one noise level, behind a named classifier
    const r18 = await cli(['train', 'denoiser', '--dataset', 'mnist', '--classifier', 'models/mnist/classifier-dds0.5', '--out', join(dir, 'never')]);
    expect([r18.code, r18.stderr]).toEqual([2, expect.stringMatching(/USAGE.*needs --sigma in \(0, 2\]/)]);
    const r19 = await cli(['train', 'denoiser', '--dataset', 'mnist', '--sigma', '0.5', '--out', join(dir, 'never')]);
    expect([r19.code, r19.stderr]).toEqual([2, expect.stringMatching(/USAGE.*needs --classifier PATH/)]);
    const r20 = await cli(['train', 'denoiser', '--dataset', 'mnist', '--sigma', '0.5', '--classifier', join(dir, 'missing'), '--out', join(dir, 'never'), '--checkpoint', join(dir, 'never.ckpt')]);
    expect(r20.code).toBe(1);
    expect(r20.stderr).toMatch(/UNKNOWN_MODEL.*no classifier weights at .*missing\.json/);
    expect(r20.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(dir, 'never.json'))).toBe(false);
  });

  it('<command> --help prints that command\'s usage; every option it names is one the parser accepts', async () => {
    const { COMMAND_HELP } = await import('../src/cli/index.js');
    const { OPTIONS } = await import('../src/cli/args.js');
    const r = await cli(['train', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: advpurify train classifier\|diffusion\|restore\|denoiser/);
    expect(r.stdout).toContain('--purify-aug');
    for (const [cmd, text] of Object.entries(COMMAND_HELP)) {
      for (const [, flag] of text.matchAll(/--([a-z][a-z0-9-]*)/g)) expect(Object.keys(OPTIONS), `${cmd} --help names --${flag}`).toContain(flag);
    }
  });
});
