/** Worker thread of `runInWorkers`: one tfjs instance; runs the tasks it is sent, one at a time. */
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '../../src/backend/index.js';
import { TaskRunner, loadImages, type RunSpec, type Task, type WorkerMessage } from './tasks.js';

process.env.ADVPURIFY_QUIET = '1';
await initBackend();
const spec = (workerData as { spec: RunSpec }).spec;
const runner = new TaskRunner(spec, loadImages(spec));
const port = parentPort!;
port.on('message', (task: Task) => {
  runner.run(task).then(
    (rows) => port.postMessage({ rows } satisfies WorkerMessage),
    (e: unknown) => port.postMessage({ error: e instanceof Error ? e.message : String(e) } satisfies WorkerMessage),
  );
});
