/**
 * Let the event loop run (timers, I/O, signals, worker messages) before continuing. Our tensor work is synchronous
 * (wasm and cpu kernels), and `await` on a settled promise only drains microtasks, so a long loop of them starves
 * everything else: a server stops answering, Ctrl-C waits, and a test runner's worker misses its RPC deadline
 * (vitest's "Timeout calling onTaskUpdate" after 60 s without a turn of the loop). Long loops call this between
 * batches.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
