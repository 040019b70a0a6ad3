/**
 * Append-only TSV logs that long benchmark runs resume from: a header line, then one complete row per
 * finished chunk. A run killed mid-write leaves an unfinished last line; opening the log cuts it.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/**
 * Open (creating it with `header` if missing) the log at `path` and return the tab-split fields of its
 * complete rows. A partial last line (no trailing newline) is removed from the file, so rows appended
 * next start on a line of their own. Rows are not validated here: the caller's parser drops bad ones.
 */
export function openTsvLog(path: string, header: string): string[][] {
  if (!existsSync(path)) {
    writeFileSync(path, header + '\n');
    return [];
  }
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n').slice(1, -1); // the piece after the last newline is '' or unfinished
  if (!text.endsWith('\n')) writeFileSync(path, [header, ...lines].join('\n') + '\n');
  return lines.map((l) => l.split('\t'));
}

/** A log holds rows made under other settings (or has rows but no record of its settings). */
export class LogSettingsMismatchError extends Error {
  readonly code = 'LOG_SETTINGS_MISMATCH';
  constructor(message: string) {
    super(message);
    this.name = 'LogSettingsMismatchError';
  }
}

/** Where a log's settings record lives: `<log without .tsv>.settings.json`. */
export const settingsPath = (log: string): string => log.replace(/\.tsv$/, '') + '.settings.json';

/** The top-level fields on which two settings records differ, as "field: then, now" phrases. */
export function settingsDiff(was: Record<string, unknown>, now: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(was), ...Object.keys(now)])]
    .filter((k) => JSON.stringify(was[k]) !== JSON.stringify(now[k]))
    .map((k) => `${k}: ${JSON.stringify(was[k])} then, ${JSON.stringify(now[k])} now`);
}

/**
 * Tie the log at `log` to the settings its rows depend on (options resolved against the defaults, content
 * hashes of the weights used): with no rows yet, record `settings` beside the log; with rows, require the
 * recorded settings to be equal, else throw LogSettingsMismatchError naming the fields that changed. A log
 * is thus never continued with other weights, another default, or another attack budget.
 */
export function bindLogSettings(log: string, settings: Record<string, unknown>, rows: number): void {
  const sp = settingsPath(log);
  if (rows === 0) {
    writeFileSync(sp, JSON.stringify(settings, null, 1) + '\n');
    return;
  }
  const fix = 'move the log aside or write into another --out';
  if (!existsSync(sp)) throw new LogSettingsMismatchError(`${log} has ${rows} rows but no ${sp} recording the settings they were made with; ${fix}`);
  const differ = settingsDiff(JSON.parse(readFileSync(sp, 'utf8')) as Record<string, unknown>, settings);
  if (differ.length > 0) throw new LogSettingsMismatchError(`${log} was made with other settings (${differ.join('; ')}); ${fix}`);
}
