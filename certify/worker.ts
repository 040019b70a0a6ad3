/** A certify worker thread (runCertify with `workers`): one tfjs instance; builds each (base, sigma) once, certifies the images it is sent. */
import { workerData } from 'node:worker_threads';
import { initBackend } from '../src/backend/index.js';
import { serveTasks } from '../src/util/threads.js';
import { Smooth } from './core.js';
import { loadBase } from './load.js';
import { type ImageTask, type LogRow, type WorkerSetup, certifyImage } from './run.js';

process.env.ADVPURIFY_QUIET = '1';
await initBackend();
const setup = workerData as WorkerSetup;
const size = setup.shape[0] * setup.shape[1] * setup.shape[2];
const position = new Map(setup.indices.map((index, k) => [index, k]));
const smooths = new Map<string, Promise<Smooth>>();

function smoothFor(base: string, sigma: number): Promise<Smooth> {
  const key = `${base}|${sigma}`;
  let s = smooths.get(key);
  if (!s) {
    s = loadBase(setup.bases[base], sigma).then((b) => new Smooth(b, sigma, setup.numClasses));
    smooths.set(key, s);
  }
  return s;
}

serveTasks<ImageTask, LogRow>(async ({ base, sigma, index }) => {
  const k = position.get(index);
  if (k === undefined) throw new Error(`image ${index} was not sent to this worker`);
  const pixels = setup.images.subarray(k * size, (k + 1) * size);
  return certifyImage(await smoothFor(base, sigma), base, { index, label: setup.labels[k], pixels, shape: setup.shape }, setup);
});
