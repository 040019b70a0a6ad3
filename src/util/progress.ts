/** A one-line progress bar on stderr when it is a TTY; otherwise a line every `every` seconds. */
export class Progress {
  private start = Date.now();
  private last = 0;
  constructor(
    private total: number,
    private label: string,
    private every = 30,
  ) {}
  update(done: number, extra = ''): void {
    const now = Date.now();
    const tty = process.stderr.isTTY;
    if (!tty && now - this.last < this.every * 1000 && done < this.total) return;
    this.last = now;
    const frac = this.total ? done / this.total : 1;
    const el = (now - this.start) / 1000;
    const eta = frac > 0 ? el * (1 / frac - 1) : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const line = `${this.label} [${bar}] ${done}/${this.total} ${(100 * frac).toFixed(1)}% ${fmt(el)} eta ${fmt(eta)} ${extra}`;
    if (tty) process.stderr.write(`\r${line.slice(0, (process.stderr.columns || 120) - 1)}`);
    else process.stderr.write(`${line}\n`);
  }
  done(extra = ''): void {
    this.update(this.total, extra);
    if (process.stderr.isTTY) process.stderr.write('\n');
  }
}

function fmt(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

/** A moving-average loss for a progress line: '-' until the first sample (not "NaN", which reads as divergence). */
export function fmtLoss(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}
