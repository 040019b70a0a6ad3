/**
 * `advpurify` command line:
 *   advpurify purify in.png -o out.png [--mode diffpure|oneshot|none|patch|auto|restore --t-star N --steps K --sampler ddpm|ddim --sigma S --restorer x0|cold --seed N --keep-size]
 *   advpurify classify in.png [--purify --draws K ...] [--json]
 *   advpurify eval --dataset fashion-mnist --split val|test|fixture [--count N] [purify options]
 *   advpurify train classifier|diffusion --dataset fashion-mnist|mnist [--epochs|--steps --batch-size --lr --seed --noise-sigma [--consistency L] --variant --init --weights-dtype float16|uint8]
 *     classifier only: [--mask-aug 4,6,8] [--adv-eps 0.1 --adv-steps 7] [--smooth-adv 1 --noise-draws 4 --adv-warmup 1] [--purify-aug 300,450,600 --purify-fraction 0.5 --purify-steps 5 --purified-val-count 1000] [--purify-sigma 0.5] [--restore-aug]
 *   advpurify train restore --dataset fashion-mnist [--steps 10000 --batch-size 64 --lr 5e-4 --seed 1 --init models/fashion-mnist/diffusion --validate-every 500]
 *   advpurify train denoiser --dataset fashion-mnist --sigma 0.5 --classifier PATH [--steps 2000 --batch-size 32 --lr 2e-5 --consistency 5 --mse 0 --validate-every 500 --acr-val-count 500 --student-ch N --distill W --cls 1]
 *   advpurify certify --dataset fashion-mnist --base dds,noisy --sigma 0.25,0.5,1.0 --n0 100 --n 10000 --alpha 0.001 --count 100 --skip 1 [--workers N]
 *   advpurify bench perf
 *   advpurify bench corruptions [--split test|val|fixture --count 1000 --degradations a,b --severities 1,2,3 --preprocessors raw,diffpure,restore,... --variant classifier-<name>]
 *   advpurify serve [--port 3000 --workers N --model DIR]
 * Errors print one line and exit 1 (2 for usage errors); `--json` prints machine-readable results on stdout.
 */
import { UsageError, parse } from './args.js';
import { COMMANDS } from './commands.js';

const HELP = `usage: advpurify <command> [options]
commands:
  purify <in> -o <out>     purify an image file (PNG out)
  classify <in>            classify an image file, optionally after --purify
  eval                     accuracy of the shipped classifier with/without purification on a data split
  train classifier|diffusion|restore|denoiser  train a model (checkpoints and resumes)
  certify                  randomized-smoothing certification (Cohen et al.; denoised smoothing)
  bench perf|robustness|patch|corruptions  throughput; adaptive-attack robustness; patch defence; corruption suite
  serve                    HTTP server (same as npm start)
run 'advpurify <command> --help' for the command's options (see README).`;

/** `advpurify <command> --help`: the command's usage and options. */
export const COMMAND_HELP: Record<string, string> = {
  purify: `usage: advpurify purify <in> -o <out.png> [options]
  --mode diffpure|oneshot|none|patch|auto|restore   (default diffpure)
  --t-star N      diffusion step to noise to, 1..1000 (default 450)
  --steps K       reverse steps (default 5)      --sampler ddpm|ddim
  --sigma S       oneshot: pixel-scale noise level; restore: the degradation's level
  --restorer x0|cold   restore mode's design     --draws K
  --guidance G    diffpure (ddpm): weight of the input in each reverse step, 0..1 (default 0)
  --seed N        reproducible randomness (default: fresh from the OS)
  --keep-size     resize the output back to the input's size
  --model NAME|DIR     shipped model (fashion-mnist, mnist) or a weights directory
  --json          machine-readable result on stdout`,
  classify: `usage: advpurify classify <in> [--purify [purify options]] [--variant classifier-<name>] [--draws K] [--json]`,
  eval: `usage: advpurify eval --dataset fashion-mnist|mnist --split val|test|fixture [--count N] [--variant classifier-<name>] [--mode ... --t-star N --steps K --sampler S --guidance G --draws K --seed N]
       advpurify eval --denoise [--sigma 0.25,0.5,1] ...   one-shot denoising PSNR of the diffusion model`,
  train: `usage: advpurify train classifier|diffusion|restore|denoiser --dataset fashion-mnist|mnist [options]
  all:        --seed N --lr X --batch-size B --out PATH --checkpoint PATH   (checkpoints and resumes)
  classifier: --epochs E --variant NAME --init PATH --weights-dtype float16|uint8 --steps-per-epoch S
              --noise-sigma S                 Gaussian-noise training (Cohen et al.)
              --consistency L [--consistency-eta 0.5 --noise-draws 2]
                                              consistency regularization on top (Jeong & Shin; epoch chosen by validation ACR)
              --adv-eps E --adv-steps K       PGD adversarial training (Madry et al.)
              --smooth-adv E [--adv-steps 10 --noise-draws 4 --adv-warmup 1]
                                              SmoothAdv (Salman et al.): L2 PGD on the smoothed classifier over the
                                              noise draws, trained on every draw (with --noise-sigma; add --consistency L
                                              for Jeong & Shin's SmoothAdv + consistency; epoch chosen by validation ACR)
              --mask-aug 4,6,8                PatchCleanser mask augmentation
              --purify-aug 300,450,600 [--purify-fraction 0.5 --purify-steps 5 --purify-model NAME --purified-val-count 1000]
                                              purification-aware training (part of each batch through diffpure)
              --purify-sigma S [--purify-fraction 1 --purify-model NAME]
                                              denoised smoothing's base classifier: batches one-shot denoised from
                                              x + N(0, S^2) (epoch chosen by the smoothed classifier's validation ACR);
                                              with --consistency L, over --noise-draws separately denoised copies
              --restore-aug [--purify-fraction 0.5 --purify-model NAME --purified-val-count 1000]
                                              the classifier behind mode restore: part of each batch damaged by random
                                              degradation sequences, then restored (epoch chosen by the mean of clean
                                              and restored validation accuracies)
  diffusion:  --steps N --decay-from N
  restore:    --steps N --decay-from N --init PATH --validate-every N
  denoiser:   --sigma S --classifier PATH [--init PATH --steps 2000 --consistency 5 --consistency-eta 0.5 --noise-draws 2
              --mse 0 --validate-every 500 --acr-val-count 500 --student-ch N --distill W --cls 1]
                                              denoised smoothing's denoiser: the diffusion model fine-tuned at sigma S
                                              through the frozen classifier (consistency loss; best validation ACR kept);
                                              --student-ch N trains a fresh U-Net of base width N instead, --distill W
                                              towards the init model's one-shot x0 (--cls 0: distillation alone)`,
  certify: `usage: advpurify certify --dataset fashion-mnist|mnist --base dds,noisy,consistency,dds-ft,dds-cons --sigma 0.25,0.5,1.0 --n0 100 --n 10000 --alpha 0.001
       [--count 100 --skip 1 | --indices 0-49,99-50] [--seed N --workers N --out DIR --json]
       Runs may share --out (processes or machines): each skips images another has logged.`,
  bench: `usage: advpurify bench perf
       advpurify bench robustness --dataset fashion-mnist --split test --count 200 --norm linf|l2 --eps 0.1 --preset standard|strong
             --defense none,jpeg[:q],bitdepth[:b],median,diffpure,oneshot,restore,adv[,<defence>@classifier-<name>] --attacks pgd,apgd,square
             [--t-star N --steps K --sampler ddpm|ddim --guidance G --votes K --workers N --out DIR --reverse --report-cost]
       Runs may share --out: each skips the batches another has logged; --reverse starts from the last image.
       advpurify bench patch [--count 200 --sizes 4,6,8 --indices 0-199 --workers N --attacks perimage,universal --defense none,diffpure,patch,auto,patchcleanser --cleanser-classifiers classifier-masked]
       advpurify bench corruptions [--split test|val|fixture --count 1000 --degradations a,b --severities 1,2,3 --preprocessors raw,diffpure,restore,...
             --restore-t-star N --restore-steps K --cold-steps K --variant classifier-<name> --out DIR]`,
  serve: `usage: advpurify serve [--port 3000 --host 127.0.0.1 --workers N --model NAME|DIR]   (same as npm start)`,
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${HELP}\n`);
    return cmd ? 0 : 2;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    process.stderr.write(`advpurify: unknown command "${cmd}"\n${HELP}\n`);
    return 2;
  }
  try {
    const { positionals, flags } = parse(rest);
    if (flags.help) {
      process.stdout.write(`${COMMAND_HELP[cmd] ?? HELP}\n`);
      return 0;
    }
    return (await run(positionals, flags)) ?? 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    process.stderr.write(`advpurify ${cmd}: ${err.code ? `[${err.code}] ` : ''}${err.message}\n`);
    if (process.env.ADVPURIFY_DEBUG) process.stderr.write(`${err.stack}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}
