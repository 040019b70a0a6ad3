/** Worker for the 1-vs-2-thread throughput benchmark: purifies `batches` batches and reports the time. */
import { parentPort, workerData } from 'node:worker_threads';
import { readTidy, tf } from '../backend/index.js';
import { createPurifier } from '../purify/index.js';

const { batches, batchSize, options } = workerData as { batches: number; batchSize: number; options: Record<string, unknown> };
process.env.ADVPURIFY_QUIET = '1';
const p = await createPurifier(options);
const x = tf.randomUniform([batchSize, 28, 28, 1]) as tf.Tensor4D;
readTidy(() => p.purify(x)); // warm-up
parentPort!.postMessage({ ready: true });
await new Promise<void>((r) => parentPort!.once('message', () => r()));
const t0 = performance.now();
for (let i = 0; i < batches; i++) readTidy(() => p.purify(x, { seed: i }));
parentPort!.postMessage({ ms: performance.now() - t0 });
