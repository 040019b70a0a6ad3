/** A `bench patch` worker thread (runPatchBench with `workers`): one tfjs instance; loads the data and models once, runs the tasks it is sent. */
import { workerData } from 'node:worker_threads';
import { initBackend } from '../../backend/index.js';
import { serveTasks } from '../../util/threads.js';
import { PatchTaskRunner, loadPatchBench, type PatchBenchArgs, type PatchTask } from './bench.js';
import type { BenchRow } from './bench-report.js';

process.env.ADVPURIFY_QUIET = '1';
await initBackend();
const runner = new PatchTaskRunner(await loadPatchBench(workerData as PatchBenchArgs, false));
serveTasks<PatchTask, BenchRow[] | null>(async (t) => runner.run(t));
