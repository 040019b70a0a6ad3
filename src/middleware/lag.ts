/**
 * Event-loop delay watch for load shedding: every `intervalMs` the p99 delay of the last window is
 * taken from perf_hooks' histogram. Above `maxDelayMs`, a growing share of new requests is shed:
 * 1 - maxDelayMs / p99 (half at twice the limit), capped at `maxShedFraction`, so a starved process
 * sheds in proportion instead of refusing everything.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export class EventLoopMonitor {
  /** p99 event-loop delay of the last complete window, ms */
  p99Ms = 0;
  private readonly h: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly maxDelayMs: number,
    intervalMs = 500,
    readonly maxShedFraction = 0.95,
  ) {
    this.h = monitorEventLoopDelay({ resolution: 10 });
    this.h.enable();
    this.timer = setInterval(() => {
      this.p99Ms = this.h.count > 0 ? this.h.percentile(99) / 1e6 : 0;
      this.h.reset();
    }, intervalMs).unref();
  }

  /** Share of new requests to shed now, in [0, maxShedFraction]. */
  get shedFraction(): number {
    if (!(this.maxDelayMs > 0) || this.p99Ms <= this.maxDelayMs) return 0;
    return Math.min(this.maxShedFraction, 1 - this.maxDelayMs / this.p99Ms);
  }

  /** Decide for one request. */
  shouldShed(): boolean {
    return Math.random() < this.shedFraction;
  }

  close(): void {
    clearInterval(this.timer);
    this.h.disable();
  }
}
