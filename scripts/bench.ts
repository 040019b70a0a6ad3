import { runPerfBench } from '../src/bench/perf.js';
await runPerfBench();
