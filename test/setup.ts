// Every test file runs on the backend users get by default (wasm here, with our training kernels).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll } from 'vitest';
import { initBackend } from '../src/backend/index.js';

process.env.ADVPURIFY_QUIET ??= '1';
await initBackend();

// Our tensor work is synchronous, so a long loop that never yields (see src/util/yield.ts) holds the event loop for
// as long as it runs. vitest's worker must answer its RPC within 60 s of a turn of the loop or the whole run fails
// with "Timeout calling onTaskUpdate" (CI did, once, on a 44 s block here). Fail the file, with the cause, when any
// block exceeds MAX_BLOCK_S, which leaves room for a slower CI machine.
const MAX_BLOCK_S = Number(process.env.ADVPURIFY_TEST_MAX_BLOCK_S ?? 30);
const loop = monitorEventLoopDelay({ resolution: 20 });
loop.enable();
afterAll(async () => {
  await new Promise((r) => setTimeout(r, 50)); // the monitor records a block once the loop turns again
  loop.disable();
  const worst = loop.max / 1e9;
  if (worst > MAX_BLOCK_S) {
    throw new Error(`this file held the event loop for ${worst.toFixed(1)} s without yielding (limit ${MAX_BLOCK_S} s): await yieldToEventLoop() between batches of the long loop`);
  }
});
