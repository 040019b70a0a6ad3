/**
 * Event-loop delay watch for load shedding: every `intervalMs` the p99 delay of the last window is
 * taken from perf_hooks' histogram; while it is above `maxDelayMs`, `overloaded` is true.
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
  ) {
    this.h = monitorEventLoopDelay({ resolution: 10 });
    this.h.enable();
    this.timer = setInterval(() => {
      this.p99Ms = this.h.count > 0 ? this.h.percentile(99) / 1e6 : 0;
      this.h.reset();
    }, intervalMs).unref();
  }

  get overloaded(): boolean {
    return this.maxDelayMs > 0 && this.p99Ms > this.maxDelayMs;
  }

  close(): void {
    clearInterval(this.timer);
    this.h.disable();
  }
}
