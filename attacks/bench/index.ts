/**
 * Robustness benchmark: every defence of attacks/defenses.ts against the same adaptive attacks on the
 * same images, resumable per-image logs, worker threads, Markdown/JSON/SVG reports, cost estimates.
 *
 *   const r = await runRobustness({ dataset: 'fashion-mnist', split: 'test', count: 200, norm: 'Linf', eps: [0.1],
 *     defenses: ['none', 'diffpure'], preset: 'standard', outDir: 'runs/robustness', workers: 2 });
 *   const cost = await attackCost({ dataset: 'fashion-mnist', defenses: ['none', 'diffpure'], preset: 'standard' });
 */
export { runRobustness, type RobustnessOptions, type RobustnessResult } from './run.js';
export { attackCost, attackBudget, renderCost, type CostOptions, type CostReport, type CostRow } from './cost.js';
export { PRESETS, PRESET_NAMES, ATTACK_NAMES, buildAttacks, defaultAttacks, type AttackName, type AttackSettings, type PresetName } from './config.js';
export { attackBatch, type ImageRow } from './evaluate.js';
export { logPath, openLog, LogMismatchError } from './log.js';
export { renderMarkdown, renderSvg, summarise, type ResultRow, type RobustnessReport } from './report.js';
export { benchRobustness, DEFAULT_DEFENSES } from './cli.js';
