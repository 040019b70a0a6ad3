/**
 * One rolling JSONL log per defence: a header line naming everything the numbers depend on (attacks,
 * budgets, norm, seed, model fingerprints), then one line per (eps, image). A run resumes by skipping
 * the (eps, index) pairs already logged; a log written under a different configuration is refused
 * rather than silently mixed. A line cut short by a killed run is dropped on reopening.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageRow } from './evaluate.js';

export const LOG_FORMAT = 'advpurify-robustness-log/1';

export interface LogHeader {
  format: typeof LOG_FORMAT;
  defense: string;
  /** everything the rows depend on; compared on resume */
  config: Record<string, unknown>;
}

/** File name of a defence's log: 'jpeg:50' -> jpeg-50.jsonl. */
export function logPath(outDir: string, defense: string): string {
  return join(outDir, `${defense.replace(/[^\w.-]/g, '-')}.jsonl`);
}

/** JSON with object keys sorted, so equal configurations compare equal as strings. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export const rowKey = (eps: number, index: number) => `${eps}/${index}`;

export class LogMismatchError extends Error {
  readonly code = 'LOG_MISMATCH';
}

/**
 * Open (or create) a defence's log for `header`; returns its complete rows. Throws LogMismatchError when
 * the existing log was written under another configuration.
 */
export function openLog(path: string, header: LogHeader): ImageRow[] {
  if (!existsSync(path)) {
    writeFileSync(path, `${JSON.stringify(header)}\n`);
    return [];
  }
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  let old: LogHeader;
  try {
    old = JSON.parse(lines[0]) as LogHeader;
  } catch {
    throw new LogMismatchError(`${path}: not a robustness log`);
  }
  if (old.format !== LOG_FORMAT || old.defense !== header.defense || canonical(old.config) !== canonical(header.config)) {
    const diff = Object.keys({ ...old.config, ...header.config }).filter((k) => canonical(old.config?.[k]) !== canonical(header.config[k]));
    throw new LogMismatchError(
      `${path} was written by a run with different settings (${diff.join(', ') || 'format/defence'}); ` +
        'use another --out directory, or delete the log to start this defence over',
    );
  }
  const rows = rowsOf(lines); // a corrupt line is recomputed
  if (!text.endsWith('\n') || rows.length !== lines.length - 2) {
    writeFileSync(path, [JSON.stringify(header), ...rows.map((r) => JSON.stringify(r))].join('\n') + '\n');
  }
  return rows;
}

/** Append rows in one write (a batch lands whole or, if the process dies mid-write, as a droppable tail). */
export function appendRows(path: string, rows: readonly ImageRow[]): void {
  if (rows.length) appendFileSync(path, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

/**
 * Read a log without touching it (another process may be appending to it): its header and complete rows,
 * or undefined when the file is not a robustness log. An unfinished last line is ignored.
 */
export function readLog(path: string): { header: LogHeader; rows: ImageRow[] } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  let header: LogHeader;
  try {
    header = JSON.parse(lines[0]) as LogHeader;
  } catch {
    return undefined;
  }
  if (header?.format !== LOG_FORMAT || typeof header.defense !== 'string' || !header.config) return undefined;
  return { header, rows: rowsOf(lines) };
}

/** The complete rows after the header: lines[last] is '' after a complete final line, or an unfinished row (dropped); corrupt lines are skipped. */
function rowsOf(lines: string[]): ImageRow[] {
  const rows: ImageRow[] = [];
  for (const line of lines.slice(1, -1)) {
    try {
      rows.push(JSON.parse(line) as ImageRow);
    } catch {
      // corrupt: skipped
    }
  }
  return rows;
}
