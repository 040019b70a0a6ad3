/** Worker thread of `runInWorkers`: one tfjs instance; runs the tasks it is sent, one at a time. */
import { workerData } from 'node:worker_threads';
import { initBackend } from '../../src/backend/index.js';
import { serveTasks } from '../../src/util/threads.js';
import { TaskRunner, loadImages, type RunSpec, type Task } from './tasks.js';
import type { ImageRow } from './evaluate.js';

process.env.ADVPURIFY_QUIET = '1';
await initBackend();
const spec = (workerData as { spec: RunSpec }).spec;
const runner = new TaskRunner(spec, loadImages(spec));
serveTasks<Task, ImageRow[]>((task) => runner.run(task));
