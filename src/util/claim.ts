/**
 * Claims on a piece of work shared by processes that write into one directory (two benchmark runs started
 * from opposite ends of the same images, or a run on another machine whose output is merged): a claim is a
 * lock file created exclusively next to the result, holding who took it. A claim whose holder has died is
 * stale and may be taken over: on this host when its pid no longer runs, from another host once it is older
 * than `foreignMaxAgeMs` (its pid cannot be checked from here).
 */
import { hostname } from 'node:os';
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';

export interface ClaimHolder {
  pid: number;
  host: string;
  /** ms since the epoch */
  started: number;
}

export interface ClaimOptions {
  /** a claim from another host older than this is stale (default 12 h) */
  foreignMaxAgeMs?: number;
}

/** Who holds the claim at `path`, or null when nobody does (or the file is unreadable/half written). */
export function claimHolder(path: string): ClaimHolder | null {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as Partial<ClaimHolder>;
    if (typeof h.pid !== 'number' || typeof h.host !== 'string' || typeof h.started !== 'number') return null;
    return { pid: h.pid, host: h.host, started: h.started };
  } catch {
    return null;
  }
}

function mtimeMs(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return Date.now(); // gone meanwhile: the next attempt creates it
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, but not ours to signal
  }
}

/** Whether a claim's holder may still be working on it. */
export function claimAlive(h: ClaimHolder, o: ClaimOptions = {}): boolean {
  if (h.host === hostname()) return running(h.pid);
  return Date.now() - h.started < (o.foreignMaxAgeMs ?? 12 * 3600_000);
}

/**
 * Try to claim `path`: returns a release function (removes the lock) when this process now holds it, null
 * when a live holder has it. A stale claim is removed and taken over. A claim this process already holds
 * (same pid and host: another thread of this process) counts as held by someone else.
 */
export function tryClaim(path: string, o: ClaimOptions = {}): (() => void) | null {
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const h = claimHolder(path);
      // unreadable: being written right now (the holder writes right after creating it), so held, unless it
      // has stayed unreadable for a minute (its writer died in between)
      if (h === null ? Date.now() - mtimeMs(path) < 60_000 : claimAlive(h, o)) return null;
      rmSync(path, { force: true });
      continue;
    }
    const me: ClaimHolder = { pid: process.pid, host: hostname(), started: Date.now() };
    writeSync(fd, JSON.stringify(me) + '\n');
    closeSync(fd);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const h = claimHolder(path);
      if (h && h.pid === me.pid && h.host === me.host && h.started === me.started) rmSync(path, { force: true });
    };
  }
  return null;
}

/** Block this thread for `ms` (synchronous code that waits on another process). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
