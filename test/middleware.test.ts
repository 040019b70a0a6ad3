/**
 * The middleware's parts (sniffing, schemas, option merging, error mapping, micro-batching) and the
 * middleware mounted in an app of one's own, over real HTTP with the shipped models and one worker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import multer from 'multer';
import sharp from 'sharp';
import {
  classifyHandler,
  errorHandler,
  EventLoopMonitor,
  HttpError,
  jsonBodySchema,
  optionsSchema,
  parseQueryOptions,
  purifyMiddleware,
  PurifyPool,
  resolveModel,
  sniffImage,
  toHttpError,
  type ClassifyResponse,
} from '../src/middleware/index.js';
import { MicroBatcher } from '../src/middleware/batcher.js';
import { mergeOptions, OPTION_NAMES } from '../src/middleware/schemas.js';
import { PurifyError } from '../src/purify/errors.js';
import { packageRoot } from '../src/data/index.js';
import { decodeImage, toOriginalRect } from '../src/purify/index.js';
import { join } from 'node:path';
import { tf } from '../src/backend/index.js';
import { overlap, patchedFixturePng, SQUARE } from './patched-image.js';

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('did not throw');
}

describe('sniffImage: magic bytes, not the declared type', () => {
  it('recognises the formats sharp decodes and nothing else', async () => {
    const img = sharp({ create: { width: 4, height: 4, channels: 3, background: '#123456' } });
    expect(sniffImage(await img.clone().png().toBuffer())).toBe('png');
    expect(sniffImage(await img.clone().jpeg().toBuffer())).toBe('jpeg');
    expect(sniffImage(await img.clone().webp().toBuffer())).toBe('webp');
    expect(sniffImage(await img.clone().gif().toBuffer())).toBe('gif');
    expect(sniffImage(await img.clone().tiff().toBuffer())).toBe('tiff');
    expect(sniffImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeUndefined(); // no SVG: scripts, entities
    expect(sniffImage(Buffer.from('%PDF-1.7'))).toBeUndefined();
    expect(sniffImage(new Uint8Array([0x89, 0x50]))).toBeUndefined();
    expect(sniffImage(new Uint8Array(0))).toBeUndefined();
  });
});

describe('options: JSON Schemas, query coercion, what the app allows', () => {
  it('exports JSON Schemas with bounds that stop abuse', () => {
    const p = JSON.parse(JSON.stringify(optionsSchema)) as { properties: Record<string, { maximum?: number }>; additionalProperties: boolean };
    expect(p.properties.steps.maximum).toBe(50);
    expect(p.properties.draws.maximum).toBe(16);
    expect(p.additionalProperties).toBe(false);
    expect(Object.keys(p.properties).sort()).toEqual([...OPTION_NAMES].sort());
    expect(jsonBodySchema.required).toEqual(['image']);
  });

  it('validates a copy of the query: strings coerced, arrays and unknown names refused', () => {
    const q = { steps: '5', mode: 'oneshot' };
    expect(parseQueryOptions(q)).toEqual({ steps: 5, mode: 'oneshot' });
    expect(q.steps).toBe('5'); // the request's own object is untouched
    expect(thrown(() => parseQueryOptions({ steps: ['1', '2'] }))).toMatchObject({ status: 400, field: 'steps' });
    expect(thrown(() => parseQueryOptions({ steps: '1.5' }))).toMatchObject({ code: 'BAD_OPTION', field: 'steps' });
    expect(thrown(() => parseQueryOptions({ seed: '-1' }))).toMatchObject({ field: 'seed' });
    expect(parseQueryOptions({ guidance: '0.5' })).toEqual({ guidance: 0.5 });
    expect(thrown(() => parseQueryOptions({ guidance: '2' }))).toMatchObject({ code: 'BAD_OPTION', field: 'guidance' });
    expect(thrown(() => parseQueryOptions({ stpes: '1' }))).toMatchObject({ code: 'UNKNOWN_OPTION', field: 'stpes' });
  });

  it('merges the app options with the client ones the app allows; cross-field rules from the library', () => {
    expect(mergeOptions({ mode: 'oneshot' }, { draws: 3 }, ['draws'])).toMatchObject({ mode: 'oneshot', draws: 3 });
    expect(thrown(() => mergeOptions({ mode: 'oneshot' }, { mode: 'none' }, ['draws']))).toMatchObject({ code: 'OPTION_NOT_ALLOWED', field: 'mode' });
    expect(thrown(() => mergeOptions({}, { tStar: 4, steps: 8 }, OPTION_NAMES))).toMatchObject({ code: 'BAD_OPTION', field: 'steps' });
    expect(thrown(() => mergeOptions({}, { guidance: 1, sampler: 'ddim' }, OPTION_NAMES))).toMatchObject({ code: 'BAD_OPTION', field: 'guidance' });
  });
});

describe('resolveModel', () => {
  it('takes shipped names as they are and fails fast on a path without weights', () => {
    expect(resolveModel()).toEqual({ diffusion: 'fashion-mnist', classifier: 'fashion-mnist', classifierOptional: true });
    expect(resolveModel('mnist', false)).toMatchObject({ classifier: null });
    expect(resolveModel('fashion-mnist', '/my/clf')).toEqual({ diffusion: 'fashion-mnist', classifier: '/my/clf', classifierOptional: false });
    expect(thrown(() => resolveModel('/no/such/dir'))).toMatchObject({ code: 'UNKNOWN_MODEL', field: 'model' });
    const dir = join(packageRoot(), 'models', 'fashion-mnist');
    expect(resolveModel(dir)).toEqual({ diffusion: join(dir, 'diffusion'), classifier: join(dir, 'classifier'), classifierOptional: true });
  });
});

describe('errors: typed, stable JSON, no internals', () => {
  it('maps library, multer and body-parser errors to statuses and codes', () => {
    expect(toHttpError(new PurifyError('TOO_MANY_PIXELS', 'too big'))).toMatchObject({ status: 413, code: 'TOO_MANY_PIXELS' });
    expect(toHttpError(new PurifyError('BAD_OPTION', 'x', 'steps'))).toMatchObject({ status: 400, field: 'steps' });
    expect(toHttpError(new multer.MulterError('LIMIT_PART_COUNT'))).toMatchObject({ status: 413, code: 'TOO_MANY_PARTS' });
    expect(toHttpError(Object.assign(new Error('Unexpected token'), { type: 'entity.parse.failed', status: 400 }))).toMatchObject({ status: 400, code: 'MALFORMED_JSON' });
    const internal = toHttpError(new Error('ENOENT: /secret/path/model.bin'));
    expect(internal).toMatchObject({ status: 500, code: 'INTERNAL', message: 'internal error' });
  });

  it('errorHandler renders { error: { code, message, field? } } with headers', async () => {
    const app = express();
    app.get('/shed', (_req, _res, next) => next(new HttpError(503, 'QUEUE_FULL', 'busy', undefined, { 'Retry-After': '3' })));
    app.get('/boom', () => {
      throw new Error('secret internals');
    });
    app.use(errorHandler());
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const r = await fetch(`${url}/shed`);
      expect([r.status, r.headers.get('retry-after')]).toEqual([503, '3']);
      expect(await r.json()).toEqual({ error: { code: 'QUEUE_FULL', message: 'busy' } });
      const b = await fetch(`${url}/boom`);
      expect(b.status).toBe(500);
      expect(await b.text()).toBe('{"error":{"code":"INTERNAL","message":"internal error"}}');
    } finally {
      server.close();
    }
  });
});

describe('MicroBatcher', () => {
  const make = (maxBatch: number, maxWaitMs: number) => {
    const batches: string[][] = [];
    const b = new MicroBatcher<{ k: string; v: string; seed?: number }, string>(
      async (items) => {
        batches.push(items.map((i) => i.v));
        if (items.some((i) => i.v === 'bad')) throw new Error('batch failed');
        return items.map((i) => i.v.toUpperCase());
      },
      { maxBatch, maxWaitMs, key: (i) => i.k, solo: (i) => i.seed !== undefined },
    );
    return { b, batches };
  };

  it('batches items with equal keys that arrive together, up to maxBatch', async () => {
    const { b, batches } = make(3, 20);
    const out = await Promise.all(['a', 'b', 'c', 'd'].map((v) => b.add({ k: 'x', v })).concat(b.add({ k: 'y', v: 'e' })));
    expect(out).toEqual(['A', 'B', 'C', 'D', 'E']);
    expect(batches).toEqual([['a', 'b', 'c'], ['d'], ['e']]); // full batch at once; the rest after the wait
  });

  it('never holds an item longer than maxWaitMs for company; seeded items run alone', async () => {
    const { b, batches } = make(16, 10);
    const t0 = performance.now();
    await b.add({ k: 'x', v: 'a' });
    expect(performance.now() - t0).toBeLessThan(500);
    await Promise.all([b.add({ k: 'x', v: 's1', seed: 1 }), b.add({ k: 'x', v: 's2', seed: 1 }), b.add({ k: 'x', v: 'n' })]);
    expect(batches.slice(1)).toEqual([['s1'], ['s2'], ['n']]);
  });

  it('a failing batch rejects each of its items, and only those', async () => {
    const { b } = make(2, 5);
    const r = await Promise.allSettled([b.add({ k: 'x', v: 'ok' }), b.add({ k: 'x', v: 'bad' }), b.add({ k: 'y', v: 'fine' })]);
    expect(r.map((x) => x.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
  });
});

describe('mounted in an app of your own (shipped models, one worker)', () => {
  let pool: PurifyPool;
  let server: Server;
  let url: string;
  let png: Buffer;
  const lag = new EventLoopMonitor(100, 600_000, 1); // the test sets p99Ms itself

  beforeAll(async () => {
    // workerNice 0: the patch-mode test runs ~40 UNet passes, tens of seconds on a busy machine
    pool = new PurifyPool({ workers: 1, maxBatch: 4, workerNice: 0 });
    const app = express();
    const show = (req: express.Request, res: express.Response) => {
      const p = req.purified!;
      res.json({ shape: p.tensor.shape, min: Math.min(...p.tensor.data), max: Math.max(...p.tensor.data), mode: p.mode, draws: p.draws, format: p.format, png: p.png.toString('base64') });
    };
    app.post('/closed', purifyMiddleware({ pool, mode: 'none', maxEventLoopDelayMs: 0 }), show);
    app.post('/draws', purifyMiddleware({ pool, mode: 'oneshot', allowOverrides: ['draws'], maxEventLoopDelayMs: 0 }), show);
    app.post('/big', purifyMiddleware({ pool, mode: 'none', keepSize: true, maxEventLoopDelayMs: 0 }), show);
    app.post('/lagging', purifyMiddleware({ pool, mode: 'none', eventLoopMonitor: lag }), show);
    app.post('/classify', express.json({ limit: '1mb' }), classifyHandler({ pool, mode: 'oneshot', maxEventLoopDelayMs: 0 }));
    app.post('/masked', purifyMiddleware({ pool, mode: 'patch', allowOverrides: ['mode', 'seed'], deadlineMs: 900_000, maxEventLoopDelayMs: 0 }), (req, res) => {
      const { mode, mask } = req.purified!;
      res.json({ mode, hasMask: mask !== undefined, mask: mask && { ...mask, data: Array.from(mask.data), png: mask.png.toString('base64') } });
    });
    app.use(errorHandler());
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    png = await sharp({ create: { width: 56, height: 42, channels: 3, background: '#336699' } }).png().toBuffer();
    await pool.ready;
  }, 180_000);

  afterAll(async () => {
    lag.close();
    server?.close();
    await pool?.close();
  });

  const send = (path: string, headers: Record<string, string> = { 'content-type': 'image/png' }, body: BodyInit = new Uint8Array(png)) => fetch(`${url}${path}`, { method: 'POST', body, headers });

  it('puts the purified pixels and PNG on req.purified, and they agree', async () => {
    const r = await send('/closed');
    expect(r.status).toBe(200);
    const b = (await r.json()) as { shape: number[]; min: number; max: number; mode: string; draws: number; format: string; png: string };
    expect(b).toMatchObject({ shape: [1, 28, 28, 1], mode: 'none', draws: 1, format: 'png' });
    expect(b.min).toBeGreaterThanOrEqual(0);
    expect(b.max).toBeLessThanOrEqual(1);
    expect(b.max).toBeGreaterThan(0.2); // the image, letterboxed on black, not all zeros
    const { data, info } = await sharp(Buffer.from(b.png, 'base64')).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([28, 28]);
    expect(Math.max(...data) / 255).toBeCloseTo(b.max, 2);
  });

  it('clients cannot set options unless the app allows them', async () => {
    const ignored = (await (await send('/closed?mode=oneshot')).json()) as { mode: string };
    expect(ignored.mode).toBe('none'); // the query is not read at all
    const json = JSON.stringify({ image: png.toString('base64'), options: { mode: 'oneshot' } });
    const r = await send('/closed', { 'content-type': 'application/json' }, json);
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: { code: 'OPTION_NOT_ALLOWED', field: 'mode' } });
    const some = (await (await send('/draws?draws=2')).json()) as { shape: number[]; draws: number };
    expect(some).toMatchObject({ shape: [2, 28, 28, 1], draws: 2 });
    expect((await send('/draws?mode=none')).status).toBe(400);
  });

  it('keepSize returns the PNG at the upload size', async () => {
    const b = (await (await send('/big')).json()) as { png: string };
    const meta = await sharp(Buffer.from(b.png, 'base64')).metadata();
    expect([meta.width, meta.height]).toEqual([56, 42]);
  });

  it('the classify handler works behind an app-level express.json()', async () => {
    const r = await send('/classify', { 'content-type': 'application/json' }, JSON.stringify({ image: png.toString('base64') }));
    expect(r.status).toBe(200);
    const b = (await r.json()) as ClassifyResponse;
    expect(Object.keys(b.probabilities)).toContain(b.label);
    expect(b.purified).toMatchObject({ mode: 'oneshot', draws: 1 });
  });

  it('sheds with 503 + Retry-After while the event loop lags', async () => {
    lag.p99Ms = 1e9; // shed fraction 1 - 1e-7
    const r = await send('/lagging');
    expect([r.status, r.headers.get('retry-after')]).toEqual([503, '1']);
    expect(await r.json()).toMatchObject({ error: { code: 'OVERLOADED' } });
  });

  it('the shed share grows with the delay past the limit', () => {
    const m = new EventLoopMonitor(100, 600_000);
    m.p99Ms = 50;
    expect(m.shedFraction).toBe(0);
    m.p99Ms = 200;
    expect(m.shedFraction).toBeCloseTo(0.5);
    m.p99Ms = 1e6;
    expect(m.shedFraction).toBe(0.95);
    m.close();
  });

  it("modes patch: req.purified.mask marks the inpainted region, over a pasted square; diffpure has no mask; no tensors leak", async () => {
    const patched = await patchedFixturePng();
    const [before] = await pool.workerStats(10_000);
    const r = await send('/masked?seed=3', undefined, new Uint8Array(patched));
    expect(r.status).toBe(200);
    type Mask = { width: number; height: number; data: number[]; box: { left: number; top: number; width: number; height: number } | null; originalBox: unknown; png: string };
    const b = (await r.json()) as { mode: string; hasMask: boolean; mask: Mask };
    expect(b).toMatchObject({ mode: 'patch', hasMask: true, mask: { width: 28, height: 28 } });
    const { data, box, originalBox, png } = b.mask;
    expect(data).toHaveLength(28 * 28);
    expect(data.every((v) => v === 0 || v === 1)).toBe(true);
    const { cover, iou } = overlap(data);
    console.log(`patch mask over HTTP: box ${JSON.stringify(box)}, covers ${(cover * 100).toFixed(0)}% of the 6x6 square, IoU ${iou.toFixed(2)}`);
    expect(cover).toBeGreaterThanOrEqual(0.75);
    expect(iou).toBeGreaterThan(0.4); // the localiser grows its square by a margin: 36/64 = 0.56 at best
    // the box bounds the mask; the upload is 28x28, so it is also the box on the upload
    expect(box).not.toBeNull();
    expect(data.reduce((s, v) => s + v, 0)).toBeLessThanOrEqual(box!.width * box!.height);
    expect(box!.left).toBeLessThanOrEqual(SQUARE.left + 1);
    expect(originalBox).toEqual(box);
    // the PNG is the same mask: 28x28 grayscale, 255 where data is 1
    const meta = await sharp(Buffer.from(png, 'base64')).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels]).toEqual(['png', 28, 28, 1]);
    const img = await sharp(Buffer.from(png, 'base64')).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    expect(Array.from(img.data, (v) => (v === 255 ? 1 : 0))).toEqual(data);
    // other modes carry no mask
    const d = (await (await send('/masked?mode=diffpure', undefined, new Uint8Array(patched))).json()) as { mode: string; hasMask: boolean };
    expect(d).toEqual({ mode: 'diffpure', hasMask: false });
    const [after] = await pool.workerStats(10_000);
    expect(after.numTensors).toBe(before.numTensors);
  }, 900_000);

  it('a mask box maps back onto the upload, undoing the fit', async () => {
    const size = { width: 28, height: 28, originalWidth: 56, originalHeight: 42 };
    // contain: scaled by 1/2 to 28x21, letterboxed 3 rows from the top
    expect(toOriginalRect({ left: 14, top: 3, width: 8, height: 8 }, size, 'contain')).toEqual({ left: 28, top: 0, width: 16, height: 16 });
    expect(toOriginalRect({ left: 0, top: 0, width: 28, height: 2 }, size, 'contain')).toBeNull(); // on the letterbox
    // fill: stretched by 2 and 1.5; cover: scaled by 2/3 to 37x28, 4 columns cropped on the left
    expect(toOriginalRect({ left: 2, top: 2, width: 4, height: 4 }, size, 'fill')).toEqual({ left: 4, top: 3, width: 8, height: 6 });
    expect(toOriginalRect({ left: 0, top: 0, width: 2, height: 3 }, size, 'cover')).toEqual({ left: 6, top: 0, width: 3, height: 5 });
    // what the decoder really does: a white block on a 56x42 upload lands where toOriginalRect says
    const upload = await sharp({ create: { width: 56, height: 42, channels: 3, background: '#000' } })
      .composite([{ input: { create: { width: 16, height: 12, channels: 3, background: '#fff' } }, left: 20, top: 10 }])
      .png()
      .toBuffer();
    const dec = await decodeImage(upload, { width: 28, height: 28, channels: 1 });
    const px = dec.tensor.dataSync();
    tf.dispose(dec.tensor);
    let [t, l, btm, rgt] = [28, 28, -1, -1];
    px.forEach((v, i) => {
      if (v < 0.5) return;
      [t, l, btm, rgt] = [Math.min(t, Math.floor(i / 28)), Math.min(l, i % 28), Math.max(btm, Math.floor(i / 28)), Math.max(rgt, i % 28)];
    });
    expect(toOriginalRect({ left: l, top: t, width: rgt - l + 1, height: btm - t + 1 }, size, 'contain')).toEqual({ left: 20, top: 10, width: 16, height: 12 });
  });

  it('rejects bad app options at mount time', () => {
    expect(() => purifyMiddleware({ pool, steps: 0 })).toThrow(/steps/);
  });
});
