/**
 * A purification worker (piscina): one tfjs instance, the diffusion model (and classifier) loaded once.
 * Tasks that arrive together and share options are decoded, stacked and purified as one batch.
 * Replies are plain data; errors the client caused come back as `{ ok: false, error }`, not throws.
 */
import { BroadcastChannel, threadId, workerData } from 'node:worker_threads';
import { readlinkSync } from 'node:fs';
import sharp from 'sharp';
import { getPriority, setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { tf, initBackend, type Tensor4D } from '../backend/index.js';
import { createPurifier, decodeImage, encodeMaskPng, encodePng, loadClassifier, loadDiffusionModel, maskBounds, toOriginalRect, type ImagePurifier } from '../purify/index.js';
import type { Classifier } from '../types.js';
import type { ResolvedOptions } from '../purify/options.js';
import { MicroBatcher } from './batcher.js';
import type { ChannelMessage, ClassifyResult, MaskResult, PurifyResult, Task, TaskError, TaskResult, WorkerConfig, WorkerStats } from './protocol.js';

const cfg = workerData as WorkerConfig;

// libvips' operation cache (process-wide, up to 50 MB) never hits for uploads: it only holds memory
sharp.cache(false);

// Linux: lower this thread's priority (setpriority on its own TID) so the main thread's event loop,
// which answers health checks and sheds load, wins the CPU over purification.
if (cfg.nice > 0 && process.platform === 'linux') {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (tid > 0) setPriority(tid, Math.min(19, getPriority(tid) + cfg.nice));
  } catch {
    /* not permitted or no procfs: run at the process priority */
  }
}
const channel = new BroadcastChannel(cfg.channel);
channel.unref();

interface Loaded {
  backend: string;
  classifier?: Classifier;
  shape: [number, number, number];
}

const counters = { tasks: 0, batches: 0, largestBatch: 0 };
let isReady = false;
let backendName = 'loading';

const loaded: Promise<Loaded> = (async () => {
  const info = await initBackend();
  backendName = info.name + (info.gpu ? '-gpu' : '');
  await loadDiffusionModel(cfg.diffusion);
  let classifier: Classifier | undefined;
  if (cfg.classifier) {
    try {
      classifier = await loadClassifier(cfg.classifier);
    } catch (e) {
      if (!cfg.classifierOptional) throw e;
    }
  }
  // one cheap pass so the first request does not pay for kernel set-up
  const warm = await createPurifier({ model: cfg.diffusion, mode: 'oneshot', seed: 1, validate: false });
  tf.tidy(() => {
    const y = warm.purify(tf.zeros([1, ...warm.inputShape]) as Tensor4D);
    (classifier ? classifier.predict(y) : y).dataSync();
  });
  return { backend: backendName, classifier, shape: warm.inputShape };
})();

loaded.then(
  (l) => {
    isReady = true;
    post({ type: 'ready', threadId, backend: l.backend, classifier: l.classifier !== undefined });
  },
  (e: unknown) => post({ type: 'init-failed', threadId, code: codeOf(e) ?? 'MODEL_UNAVAILABLE', message: e instanceof Error ? e.message : String(e) }),
);

function post(m: ChannelMessage): void {
  channel.postMessage(m);
}

function stats(): WorkerStats {
  const mem = tf.memory();
  return { threadId, ready: isReady, backend: backendName, numTensors: mem.numTensors, numBytes: mem.numBytes, ...counters };
}

channel.onmessage = (ev: unknown) => {
  const m = (ev as { data?: ChannelMessage }).data;
  if (m?.type === 'stats') post({ type: 'stats-reply', id: m.id, stats: stats() });
};

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

function failure(e: unknown): TaskError {
  const x = e as { name?: string; status?: number; code?: string; message?: string; field?: string };
  if (x?.name === 'PurifyError' && typeof x.status === 'number' && typeof x.code === 'string') {
    return { ok: false, error: { status: x.status, code: x.code, message: String(x.message), ...(x.field ? { field: x.field } : {}) } };
  }
  if (process.env.ADVPURIFY_QUIET !== '1') process.stderr.write(`advpurify worker ${threadId}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return { ok: false, error: { status: 500, code: 'PURIFY_FAILED', message: 'purification failed' } };
}

// ---- batching ---------------------------------------------------------------------------------

interface Item {
  task: Task;
  x: Tensor4D; // [1,H,W,C] decoded
  originalWidth: number;
  originalHeight: number;
}

const purifiers = new Map<string, Promise<ImagePurifier>>();
function optionsKey(o: ResolvedOptions): string {
  return JSON.stringify([o.mode, o.tStar, o.steps, o.sampler, o.sigma ?? null, o.draws, o.guidance, o.restorer]);
}
function purifierFor(o: ResolvedOptions): Promise<ImagePurifier> {
  const key = optionsKey(o);
  let p = purifiers.get(key);
  if (!p) {
    if (purifiers.size >= 256) purifiers.clear(); // purifiers hold no tensors; this only bounds the map
    p = createPurifier({ ...o, model: cfg.diffusion, seed: undefined, validate: false });
    purifiers.set(key, p);
  }
  return p;
}

/** One image's inpainted region (0/1, [h*w]) as plain data: bounding boxes (model and upload pixels) and a PNG. */
async function maskResult(data: Uint8Array, it: Item, h: number, w: number): Promise<MaskResult> {
  const box = maskBounds(data, h, w);
  const size = { width: w, height: h, originalWidth: it.originalWidth, originalHeight: it.originalHeight };
  const png = await encodeMaskPng(data, w, h);
  return { width: w, height: h, data, box, originalBox: box && toOriginalRect(box, size, it.task.fit), png: new Uint8Array(png) };
}

/** Per-item masks from a batch's 0/1 mask [N*h*w], or undefined for modes without one. */
function masksFor(items: Item[], mask: Uint8Array | null, h: number, w: number): Promise<(MaskResult | undefined)[]> {
  return Promise.all(items.map((it, i) => (mask ? maskResult(mask.slice(i * h * w, (i + 1) * h * w), it, h, w) : undefined)));
}

async function runBatch(items: Item[]): Promise<TaskResult[]> {
  const t0 = performance.now();
  const { kind, options } = items[0].task;
  counters.batches++;
  counters.largestBatch = Math.max(counters.largestBatch, items.length);
  let x: Tensor4D | undefined;
  try {
    const p = await purifierFor(options);
    const [h, w, c] = p.inputShape;
    x = tf.concat(items.map((i) => i.x)) as Tensor4D;
    const common = (i: number) => ({ ok: true as const, width: w, height: h, originalWidth: items[i].originalWidth, originalHeight: items[i].originalHeight, batchSize: items.length });
    if (kind === 'classify') {
      const clf = (await loaded).classifier as Classifier;
      const r = p.classify(clf, x, { seed: options.seed });
      const computeMs = performance.now() - t0;
      const k = r.classes;
      const masks = await masksFor(items, r.mask, h, w);
      return items.map((_, i): ClassifyResult => ({
        ...common(i),
        ...(masks[i] ? { mask: masks[i] } : {}),
        kind: 'classify',
        computeMs,
        index: r.labels[i],
        classes: clf.classNames,
        probabilities: Array.from(r.probabilities.subarray(i * k, (i + 1) * k)),
        votes: Array.from(r.votes.subarray(i * k, (i + 1) * k)),
      }));
    }
    const { draws, mask } = p.purifyDrawsWithMask(x, options.draws, { seed: options.seed });
    const stacked = tf.stack(draws, 1); // [N, draws, H, W, C]
    tf.dispose(draws);
    const data = (await stacked.data()) as Float32Array;
    stacked.dispose();
    const bits = mask && Uint8Array.from(await mask.data(), (v) => (v > 0.5 ? 1 : 0));
    mask?.dispose();
    const computeMs = performance.now() - t0;
    const masks = await masksFor(items, bits, h, w);
    const per = options.draws * h * w * c;
    return await Promise.all(
      items.map(async (it, i): Promise<PurifyResult> => {
        const pixels = data.slice(i * per, (i + 1) * per);
        const first = tf.tensor3d(pixels.subarray(0, h * w * c), [h, w, c]);
        const size = it.task.keepSize ? { width: it.originalWidth, height: it.originalHeight } : undefined;
        let png: Buffer;
        try {
          png = await encodePng(first, size);
        } finally {
          first.dispose();
        }
        return {
          ...common(i),
          ...(size ?? {}),
          ...(masks[i] ? { mask: masks[i] } : {}),
          kind: 'purify',
          computeMs,
          png: new Uint8Array(png), // an exact-size copy: cloning a view would ship its whole backing store
          ...(it.task.wantPixels ? { pixels } : {}),
          shape: [options.draws, h, w, c],
        };
      }),
    );
  } finally {
    tf.dispose(items.map((i) => i.x));
    x?.dispose();
  }
}

const batcher = new MicroBatcher<Item, TaskResult>(runBatch, {
  maxBatch: cfg.maxBatch,
  maxWaitMs: cfg.maxBatchWaitMs,
  key: (i) => `${i.task.kind}:${optionsKey(i.task.options)}`,
  solo: (i) => i.task.options.seed !== undefined, // a seeded result must not depend on its batch-mates
});

/** The piscina task handler. */
export default async function handle(task: Task): Promise<TaskResult> {
  counters.tasks++;
  let l: Loaded;
  try {
    l = await loaded;
  } catch (e) {
    return { ok: false, error: { status: 503, code: 'MODEL_UNAVAILABLE', message: e instanceof Error ? e.message : String(e) } };
  }
  if (task.kind === 'classify' && !l.classifier) {
    return { ok: false, error: { status: 501, code: 'NO_CLASSIFIER', message: 'this server has no classifier loaded' } };
  }
  const [h, w, c] = l.shape;
  let item: Item;
  try {
    const dec = await decodeImage(task.image, { height: h, width: w, channels: c as 1 | 3, fit: task.fit, maxPixels: task.maxPixels });
    item = { task, x: dec.tensor, originalWidth: dec.originalWidth, originalHeight: dec.originalHeight };
  } catch (e) {
    return failure(e);
  }
  try {
    return await batcher.add(item);
  } catch (e) {
    return failure(e);
  }
}
