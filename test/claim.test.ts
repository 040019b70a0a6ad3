/**
 * Claims on shared work (src/util/claim.ts): two benchmark runs writing into one directory must not both
 * train the same universal patch, and a claim left by a run that died must not block the work for ever.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { claimHolder, tryClaim } from '../src/util/claim.js';

const dir = mkdtempSync(join(tmpdir(), 'advpurify-claim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** the pid of a process that has exited */
function deadPid(): number {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(r.stdout.toString().trim());
}

describe('claims on shared work', () => {
  it('one holder at a time; release frees it; a second release does nothing', () => {
    const lock = join(dir, 'a.lock');
    const release = tryClaim(lock);
    expect(release).not.toBeNull();
    expect(claimHolder(lock)).toMatchObject({ pid: process.pid, host: hostname() });
    expect(tryClaim(lock)).toBeNull(); // held (by this process: another thread of it counts as another holder)
    release!();
    expect(existsSync(lock)).toBe(false);
    const again = tryClaim(lock);
    expect(again).not.toBeNull();
    release!(); // the first holder's late release must not free the second holder's claim
    expect(existsSync(lock)).toBe(true);
    again!();
    expect(existsSync(lock)).toBe(false);
  });

  it('a claim whose process has died on this host is stale and taken over', () => {
    const lock = join(dir, 'b.lock');
    writeFileSync(lock, JSON.stringify({ pid: deadPid(), host: hostname(), started: Date.now() }));
    const release = tryClaim(lock);
    expect(release).not.toBeNull();
    expect(claimHolder(lock)?.pid).toBe(process.pid);
    release!();
  });

  it("another host's claim holds until it is older than the limit", () => {
    const lock = join(dir, 'c.lock');
    writeFileSync(lock, JSON.stringify({ pid: 1, host: `not-${hostname()}`, started: Date.now() - 3600_000 }));
    expect(tryClaim(lock)).toBeNull();
    expect(tryClaim(lock, { foreignMaxAgeMs: 7200_000 })).toBeNull();
    const release = tryClaim(lock, { foreignMaxAgeMs: 1800_000 });
    expect(release).not.toBeNull();
    release!();
  });

  it('a lock file still being written (unreadable) counts as held, not stale, for a minute', () => {
    const lock = join(dir, 'd.lock');
    writeFileSync(lock, '');
    expect(tryClaim(lock)).toBeNull();
    writeFileSync(lock, '{"pid": 12');
    expect(tryClaim(lock)).toBeNull();
    expect(readFileSync(lock, 'utf8')).toBe('{"pid": 12');
    // ... until it has stayed unreadable for a minute: its writer died between creating and writing it
    const old = (Date.now() - 120_000) / 1000;
    utimesSync(lock, old, old);
    const release = tryClaim(lock);
    expect(release).not.toBeNull();
    release!();
  });
});
