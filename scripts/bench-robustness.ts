/**
 * The long robustness evaluation (hours; resumable: rerun the same command after an interruption):
 *   node --import tsx scripts/bench-robustness.ts [flags of `advpurify bench robustness`]
 * With no flags: the standard preset on 200 Fashion-MNIST test images at L-inf 0.05, 0.1, 0.15, every defence,
 * two worker threads, logs and reports in runs/robustness/.
 */
import { main } from '../src/cli/index.js';

const args = process.argv.slice(2);
const defaults = ['--dataset', 'fashion-mnist', '--split', 'test', '--count', '200', '--norm', 'linf', '--eps', '0.05,0.1,0.15',
  '--defense', 'none,jpeg,bitdepth,median,diffpure,oneshot,adv', '--attacks', 'pgd,apgd,square', '--preset', 'standard',
  '--out', 'runs/robustness', '--workers', '2'];
process.exitCode = await main(['bench', 'robustness', ...(args.length ? args : defaults)]);
