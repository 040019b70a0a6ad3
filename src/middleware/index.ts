/**
 * Express 5 middleware: purify an uploaded image before your model sees it.
 *
 *   app.post('/predict', purifyMiddleware({ model: 'fashion-mnist', mode: 'diffpure' }), (req, res) => {
 *     req.purified; // { tensor: { data, shape }, png, width, height, mode, draws, ms, mask?, ... }
 *   });
 *   app.post('/classify', classifyHandler({ model: 'fashion-mnist' }));   // -> { label, probabilities, purified }
 *   app.use(errorHandler());                                                // { error: { code, message, field? } }
 *
 * Images come as multipart (field `image`), a raw image body, or JSON `{ image: base64, options }`.
 * Purification runs in worker threads (see PurifyPool); the event loop only moves bytes.
 * Clients may set options (query or JSON) only if the app allows it (`allowOverrides`), and may
 * shorten (never extend) the deadline with an `X-Deadline-Ms` header.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Mode } from '../purify/options.js';
import { HttpError, overloaded } from './errors.js';
import { createInputReader, type ImageFormat } from './input.js';
import { EventLoopMonitor } from './lag.js';
import { PurifyPool, type PoolOptions } from './pool.js';
import type { ClassifyResult, Fit, MaskResult, PurifyResult, Rect, Task } from './protocol.js';
import { mergeOptions, OPTION_NAMES, type ClientOptions, type OptionName } from './schemas.js';

export { HttpError, toHttpError, errorHandler, overloaded, type ErrorBody, type ErrorHandlerOptions } from './errors.js';
export { PurifyPool, resolveModel, type PoolOptions, type TaskEvent, type Outcome, type RunOptions } from './pool.js';
export { optionsSchema, jsonBodySchema, REQUEST_LIMITS, OPTION_NAMES, parseQueryOptions, parseJsonOptions, type ClientOptions, type OptionName } from './schemas.js';
export { sniffImage, type ImageFormat } from './input.js';
export { EventLoopMonitor } from './lag.js';

/**
 * Set on a request whose event-loop shedding draw was already made before Express (the server's
 * early 503 path), so the middleware does not draw again and shed twice as often.
 */
export const SHED_CHECKED: unique symbol = Symbol.for('advpurify.shedChecked');
export type { WorkerStats, Fit, Rect } from './protocol.js';

/**
 * Modes patch and auto: where purification inpainted the image (the suspected patch), for the first draw
 * (the one in `png`). With the default localiser the best-scoring square is always inpainted, so a mask is
 * present for clean images too: it says where the image was changed, not that it was attacked.
 */
export interface PurifiedMask {
  /** model resolution (e.g. 28 x 28), as `data` and `png` */
  width: number;
  height: number;
  /** 0/1 per pixel, row-major [height * width]: 1 = inpainted */
  data: Uint8Array;
  /** bounding rectangle of the inpainted pixels in model pixels; null when nothing was inpainted */
  box: Rect | null;
  /** the same rectangle on the uploaded image, in its pixels (letterbox/crop undone); null when nothing was inpainted */
  originalBox: Rect | null;
  /** 8-bit grayscale PNG at model resolution, 255 = inpainted */
  png: Buffer;
}

/** The mask in JSON answers: `data` left out (it is in the PNG), the PNG as base64. */
export type MaskJson = Omit<PurifiedMask, 'data' | 'png'> & { png: string };

export function maskJson(m: PurifiedMask): MaskJson {
  const { data: _data, png, ...rest } = m;
  return { ...rest, png: png.toString('base64') };
}

function toBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function purifiedMask(m: MaskResult): PurifiedMask {
  return { ...m, png: toBuffer(m.png) };
}

/** What `purifyMiddleware` leaves on `req.purified`. */
export interface Purified {
  /** Purified pixels in [0, 1], [draws, H, W, C] row-major; `tf.tensor4d(data, shape)` makes a tensor. */
  tensor: { data: Float32Array; shape: [number, number, number, number] };
  /** The first draw as PNG (model resolution, or the input's size with `keepSize`). */
  png: Buffer;
  width: number;
  height: number;
  originalWidth: number;
  originalHeight: number;
  /** the uploaded image's format, from its magic bytes */
  format: ImageFormat;
  mode: Mode;
  draws: number;
  /** time from arrival at the pool to result, ms */
  ms: number;
  /** of which waiting for a worker slot, ms */
  queueMs: number;
  /** worker time for the batch this image was part of, ms */
  computeMs: number;
  /** images purified together with this one */
  batchSize: number;
  /** modes patch and auto: the inpainted region (see PurifiedMask); undefined for the other modes */
  mask?: PurifiedMask;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      purified?: Purified;
    }
  }
}

export interface MiddlewareOptions extends ClientOptions, Omit<PoolOptions, 'deadlineMs'> {
  /** Share one pool between routes (otherwise each middleware starts its own). */
  pool?: PurifyPool;
  /** May clients set options (query string / JSON `options`)? true, false (default) or a list of names. */
  allowOverrides?: boolean | readonly OptionName[];
  /** Per-request deadline, ms (default 30000): 504 after it. */
  deadlineMs?: number;
  /** Largest accepted image, bytes (default 4 MiB): 413 beyond it. */
  maxBytes?: number;
  /** Largest accepted image in pixels, checked from the header before decoding (default 25 MP): 413. */
  maxPixels?: number;
  /** How images are fitted to the model's 28x28 (default 'contain', letterboxed). */
  fit?: Fit;
  /** Resize the purified PNG back to the upload's size. */
  keepSize?: boolean;
  /** Shed (503) a share of requests while the event loop's p99 delay exceeds this, ms (default 500; 0: off). */
  maxEventLoopDelayMs?: number;
  /** Share one event-loop monitor (overrides maxEventLoopDelayMs). */
  eventLoopMonitor?: EventLoopMonitor;
}

export type PurifyRequestHandler = RequestHandler & { readonly pool: PurifyPool; close(): Promise<void> };

const POOL_KEYS = ['model', 'classifier', 'workers', 'maxBatch', 'maxBatchWaitMs', 'maxQueue', 'workerNice'] as const;

function build(o: MiddlewareOptions, kind: Task['kind'], respond: (req: Request, res: Response, next: NextFunction, task: Task, r: unknown) => void): PurifyRequestHandler {
  const base: ClientOptions = {};
  for (const k of OPTION_NAMES) if (o[k] !== undefined) (base as Record<string, unknown>)[k] = o[k];
  mergeOptions(base, undefined, []); // the app's own options: fail at start-up, not per request
  const allow: readonly OptionName[] = o.allowOverrides === true ? OPTION_NAMES : o.allowOverrides || [];
  const ownPool = !o.pool;
  const poolOptions: PoolOptions = { deadlineMs: o.deadlineMs };
  for (const k of POOL_KEYS) if (o[k] !== undefined) (poolOptions as Record<string, unknown>)[k] = o[k];
  const pool = o.pool ?? new PurifyPool(poolOptions);
  const ownMonitor = !o.eventLoopMonitor && (o.maxEventLoopDelayMs ?? 500) > 0;
  const lag = o.eventLoopMonitor ?? (ownMonitor ? new EventLoopMonitor(o.maxEventLoopDelayMs ?? 500) : undefined);
  const read = createInputReader({ maxBytes: o.maxBytes ?? 4 * 1024 * 1024 });

  // a client may shorten its deadline (X-Deadline-Ms), never extend it
  const deadlineFor = (req: Request): number => {
    const own = o.deadlineMs ?? pool.deadlineMs;
    const h = req.headers['x-deadline-ms'];
    if (h === undefined) return own;
    const v = Number(h);
    if (!Number.isInteger(v) || v < 1) throw new HttpError(400, 'BAD_HEADER', 'X-Deadline-Ms must be a positive integer (milliseconds)', 'x-deadline-ms');
    return Math.min(own, v);
  };

  const handler = async (req: Request, res: Response, next: NextFunction) => {
    let task: Task;
    let result: unknown;
    try {
      if (!(req as Request & { [SHED_CHECKED]?: boolean })[SHED_CHECKED] && lag?.shouldShed()) throw overloaded('OVERLOADED', 'the server is overloaded; retry later', 1);
      if (pool.saturated) throw overloaded('QUEUE_FULL', 'the purification queue is full; retry later', pool.retryAfterS());
      const input = await read(req, res, allow.length > 0);
      const options = mergeOptions(base, input.client, allow);
      res.locals.advpurify = { kind, mode: options.mode, draws: options.draws, format: input.format };
      task = { kind, image: input.image, options, fit: o.fit, maxPixels: o.maxPixels, keepSize: o.keepSize, wantPixels: kind === 'purify' };
      const ac = new AbortController();
      res.once('close', () => ac.abort());
      result = await pool.run(task as Task & { kind: 'purify' }, { signal: ac.signal, deadlineMs: deadlineFor(req) });
    } catch (e) {
      return next(e);
    }
    respond(req, res, next, task, result);
  };
  return Object.assign(handler, {
    pool,
    async close() {
      if (ownMonitor) lag?.close();
      if (ownPool) await pool.close();
    },
  });
}

/** Purify the uploaded image and put the result on `req.purified`; errors go to `next(err)`. */
export function purifyMiddleware(o: MiddlewareOptions = {}): PurifyRequestHandler {
  return build(o, 'purify', (req, res, next, task, r) => {
    const p = r as PurifyResult & { ms: number; queueMs: number; pixels: Float32Array };
    req.purified = {
      tensor: { data: p.pixels, shape: p.shape },
      png: toBuffer(p.png),
      width: p.width,
      height: p.height,
      originalWidth: p.originalWidth,
      originalHeight: p.originalHeight,
      format: (res.locals.advpurify as { format: ImageFormat }).format,
      mode: task.options.mode,
      draws: task.options.draws,
      ms: p.ms,
      queueMs: p.queueMs,
      computeMs: p.computeMs,
      batchSize: p.batchSize,
      ...(p.mask ? { mask: purifiedMask(p.mask) } : {}),
    };
    next();
  });
}

export interface ClassifyResponse {
  label: string;
  index: number;
  /** mean softmax over draws, by class name */
  probabilities: Record<string, number>;
  /** fraction of draws voting for each class */
  votes: Record<string, number>;
  /** `mask` (modes patch and auto) as MaskJson: boxes and a base64 PNG */
  purified: Omit<Purified, 'tensor' | 'png' | 'mask'> & { mask?: MaskJson };
}

/**
 * A complete handler: purify, classify with the pool's classifier (shipped, or your weights via
 * `classifier: path`), majority-vote over `draws`, answer JSON `ClassifyResponse`.
 */
export function classifyHandler(o: MiddlewareOptions = {}): PurifyRequestHandler {
  return build(o, 'classify', (_req, res, _next, task, r) => {
    const c = r as ClassifyResult & { ms: number; queueMs: number };
    const byName = (v: number[]) => Object.fromEntries(c.classes.map((name, i) => [name, v[i]]));
    const body: ClassifyResponse = {
      label: c.classes[c.index],
      index: c.index,
      probabilities: byName(c.probabilities),
      votes: byName(c.votes),
      purified: {
        width: c.width,
        height: c.height,
        originalWidth: c.originalWidth,
        originalHeight: c.originalHeight,
        format: (res.locals.advpurify as { format: ImageFormat }).format,
        mode: task.options.mode,
        draws: task.options.draws,
        ms: c.ms,
        queueMs: c.queueMs,
        computeMs: c.computeMs,
        batchSize: c.batchSize,
        ...(c.mask ? { mask: maskJson(purifiedMask(c.mask)) } : {}),
      },
    };
    res.json(body);
  });
}
