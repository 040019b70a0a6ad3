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
