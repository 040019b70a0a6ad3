/**
 * The server over real HTTP (127.0.0.1, port 0) with the shipped Fashion-MNIST models and one worker.
 * Most requests use cheap modes ('none', 'oneshot'); the default diffpure path runs once, patch and auto once each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { startServer, type RunningServer } from '../src/server/index.js';
import type { ClassifyResponse, MaskJson, Rect, TaskEvent } from '../src/middleware/index.js';
import { FASHION_CLASSES } from '../src/data/index.js';
import { overlap, patchedFixturePng } from './patched-image.js';
import { pngHeader } from './png-bomb.js';

const MAX_BYTES = 64 * 1024;
let s: RunningServer;
let png: Buffer;

beforeAll(async () => {
  // workerNice 0 and a long deadline: a patch-mode request runs ~40 U-Net passes, a minute on a busy machine
  s = await startServer({ port: 0, host: '127.0.0.1', workers: 1, maxBatch: 4, maxQueue: 2, maxBytes: MAX_BYTES, maxEventLoopDelayMs: 0, deadlineMs: 300_000, workerNice: 0, logger: false });
  png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#7a6050' } })
    .composite([{ input: Buffer.from('<svg width="40" height="30"><rect x="10" y="5" width="20" height="20" fill="#fff"/></svg>') }])
    .png()
    .toBuffer();
}, 180_000);

afterAll(async () => {
  await s?.close();
});

const post = (path: string, body: BodyInit | undefined, headers: Record<string, string> = {}) => fetch(`${s.url}${path}`, { method: 'POST', body, headers });
/** An exact ArrayBuffer-backed copy: what fetch and Blob accept (a Buffer may sit on a shared pool). */
const u8 = (b: Uint8Array) => new Uint8Array(b);
const raw = (path: string, bytes: Uint8Array, type = 'image/png', headers: Record<string, string> = {}) => post(path, u8(bytes), { 'content-type': type, ...headers });

async function expectError(r: Response, status: number, code: string, field?: string): Promise<{ code: string; message: string; field?: string }> {
  const text = await r.text();
  expect({ status: r.status, text }).toMatchObject({ status });
  expect(r.headers.get('content-type')).toMatch(/application\/json/);
  const body = JSON.parse(text) as { error: { code: string; message: string; field?: string } };
  expect(body.error.code).toBe(code);
  if (field) expect(body.error.field).toBe(field);
  expect(text).not.toMatch(/\n\s+at |\.ts:\d+|node_modules/); // no stack traces or paths
  return body.error;
}

async function until(cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 2));
  }
}

const idle = () => s.pool.inFlight === 0 && s.pool.queueDepth === 0;

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
  }
  return sum;
}

describe('endpoints', () => {
  it('GET /healthz and /readyz answer once the models are loaded', async () => {
    const h = await fetch(`${s.url}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toEqual({ status: 'ok' });
    const r = await fetch(`${s.url}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ ready: true, readyWorkers: 1, model: 'fashion-mnist', classifier: 'fashion-mnist' });
  });

  it('POST /v1/purify with the default options (diffpure) returns a 28x28 grayscale PNG', async () => {
    const r = await raw('/v1/purify', png);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/png');
    expect(r.headers.get('x-purify-mode')).toBe('diffpure');
    const meta = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels]).toEqual(['png', 28, 28, 1]); // the model's one channel, not RGB
  });

  it('accepts multipart, raw and JSON (base64 and data: URL) uploads', async () => {
    const fd = new FormData();
    fd.append('image', new Blob([u8(png)], { type: 'application/octet-stream' }), 'a.bin'); // declared type ignored
    fd.append('options', JSON.stringify({ mode: 'none' }));
    const m = await post('/v1/purify', fd);
    expect(m.status).toBe(200);
    expect(m.headers.get('x-purify-mode')).toBe('none');
    const j = await post('/v1/purify', JSON.stringify({ image: `data:image/png;base64,${png.toString('base64')}`, options: { mode: 'none' } }), { 'content-type': 'application/json', accept: 'application/json' });
    expect(j.status).toBe(200);
    const body = (await j.json()) as { image: string; mode: string; width: number };
    expect(body).toMatchObject({ mode: 'none', width: 28, height: 28, originalWidth: 40, originalHeight: 30, format: 'png' });
    expect(Buffer.from(body.image, 'base64').subarray(1, 4).toString()).toBe('PNG');
    const o = await raw('/v1/purify?mode=none', png, 'application/octet-stream');
    expect(o.status).toBe(200);
  });

  it('POST /v1/classify answers { label, probabilities, votes, purified }', async () => {
    const r = await raw('/v1/classify?mode=oneshot&draws=3', png);
    expect(r.status).toBe(200);
    const body = (await r.json()) as { label: string; index: number; probabilities: Record<string, number>; votes: Record<string, number>; purified: Record<string, unknown> };
    expect(FASHION_CLASSES).toContain(body.label);
    expect(Object.keys(body.probabilities)).toEqual(FASHION_CLASSES);
    const sum = Object.values(body.probabilities).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(1, 4);
    expect(Object.values(body.votes).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    expect(body.votes[body.label]).toBe(Math.max(...Object.values(body.votes)));
    expect(body.purified).toMatchObject({ mode: 'oneshot', draws: 3, width: 28, height: 28 });
  });

  it('a fixed seed gives the same purified image, whatever else is in flight', async () => {
    const get = () => raw('/v1/purify?mode=oneshot&seed=7', png).then(async (r) => Buffer.from(await r.arrayBuffer()));
    const [a, , b] = await Promise.all([get(), raw('/v1/purify?mode=none', png), get()]);
    expect(a.equals(b)).toBe(true);
  });

  it('unknown routes are 404 and wrong methods 405, as JSON', async () => {
    await expectError(await fetch(`${s.url}/nope`), 404, 'NOT_FOUND');
    const r = await fetch(`${s.url}/v1/purify`);
    expect(r.headers.get('allow')).toBe('POST');
    await expectError(r, 405, 'METHOD_NOT_ALLOWED');
  });
});

describe('patch masks', () => {
  /** A mask PNG (base64) as 0/1 per pixel. */
  const bits = async (png: string) => Array.from(await sharp(Buffer.from(png, 'base64')).extractChannel(0).raw().toBuffer(), (v) => (v > 127 ? 1 : 0));
  const header = (r: Rect | null) => (r ? `${r.left},${r.top},${r.width},${r.height}` : 'none');

  it('modes patch and auto report the inpainted region (X-Purify-Mask-Box headers, `mask` in JSON answers) over a pasted square; diffpure has none', async () => {
    const patched = await patchedFixturePng();
    const [before] = await s.pool.workerStats(10_000);
    const p = await raw('/v1/purify?mode=patch&seed=3', patched, 'image/png', { accept: 'application/json' });
    expect(p.status).toBe(200);
    const body = (await p.json()) as { image: string; mode: string; mask: MaskJson };
    expect(body.mode).toBe('patch');
    expect(Object.keys(body.mask).sort()).toEqual(['box', 'height', 'originalBox', 'png', 'width']);
    expect(body.mask).toMatchObject({ width: 28, height: 28 });
    expect(p.headers.get('x-purify-mask-box')).toBe(header(body.mask.box));
    expect(p.headers.get('x-purify-mask-original-box')).toBe(header(body.mask.box)); // a 28x28 upload: the same pixels
    const patchOverlap = overlap(await bits(body.mask.png));
    expect(patchOverlap.cover).toBeGreaterThanOrEqual(0.75);
    expect(patchOverlap.iou).toBeGreaterThan(0.4);

    const c = await raw('/v1/classify?mode=auto&seed=3', patched);
    expect(c.status).toBe(200);
    const cb = (await c.json()) as ClassifyResponse;
    expect(cb.purified).toMatchObject({ mode: 'auto', mask: { width: 28, height: 28 } });
    const autoOverlap = overlap(await bits(cb.purified.mask!.png));
    console.log(`mask IoU with the pasted 6x6 square over HTTP: patch ${patchOverlap.iou.toFixed(2)}, auto ${autoOverlap.iou.toFixed(2)}`);
    expect(autoOverlap.iou).toBeGreaterThan(0.4);

    const d = await raw('/v1/purify?steps=1', patched, 'image/png', { accept: 'application/json' });
    expect(d.status).toBe(200);
    expect(d.headers.get('x-purify-mask-box')).toBeNull();
    expect(await d.json()).not.toHaveProperty('mask');
    const [after] = await s.pool.workerStats(10_000);
    expect(after.numTensors).toBe(before.numTensors);
  }, 900_000);
});

describe('bad input: a clear 4xx, and the server keeps serving', () => {
  it('empty body', async () => {
    await expectError(await post('/v1/purify', undefined), 400, 'EMPTY_BODY');
    await expectError(await raw('/v1/purify', new Uint8Array(0)), 400, 'EMPTY_BODY');
  });

  it('truncated PNG', async () => {
    await expectError(await raw('/v1/purify?mode=none', png.subarray(0, png.length >> 1)), 400, 'DECODE_FAILED');
  });

  it('random bytes with an image content type', async () => {
    const junk = Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 7919 + 13) % 251));
    await expectError(await raw('/v1/purify', junk, 'image/png'), 415, 'UNSUPPORTED_IMAGE', 'image');
  });

  it('a PNG whose header claims 30000x30000 (decompression bomb)', async () => {
    await expectError(await raw('/v1/purify?mode=none', pngHeader(30000, 30000)), 413, 'TOO_MANY_PIXELS');
  });

  it('an oversized upload is 413 (raw, multipart and JSON)', async () => {
    const big = Buffer.concat([png, Buffer.alloc(MAX_BYTES + 1)]);
    await expectError(await raw('/v1/purify', big), 413, 'PAYLOAD_TOO_LARGE');
    const fd = new FormData();
    fd.append('image', new Blob([u8(big)]), 'big.png');
    await expectError(await post('/v1/purify', fd), 413, 'PAYLOAD_TOO_LARGE');
    const json = JSON.stringify({ image: Buffer.concat([big, big]).toString('base64') });
    await expectError(await post('/v1/purify', json, { 'content-type': 'application/json' }), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('wrong content type is 415', async () => {
    await expectError(await post('/v1/purify', 'hello', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('malformed JSON', async () => {
    await expectError(await post('/v1/purify', '{"image": "iVBOR', { 'content-type': 'application/json' }), 400, 'MALFORMED_JSON');
    await expectError(await post('/v1/purify', '{"options": {}}', { 'content-type': 'application/json' }), 400, 'MISSING_IMAGE', 'image');
  });

  it('base64 that is not an image, and text that is not base64', async () => {
    const body = JSON.stringify({ image: Buffer.from('just some text, not a picture').toString('base64') });
    await expectError(await post('/v1/purify', body, { 'content-type': 'application/json' }), 415, 'UNSUPPORTED_IMAGE', 'image');
    await expectError(await post('/v1/purify', JSON.stringify({ image: 'not base64 at all!' }), { 'content-type': 'application/json' }), 400, 'BAD_BASE64', 'image');
  });

  it('unknown or out-of-range options name the field', async () => {
    await expectError(await raw('/v1/purify?colour=red', png), 400, 'UNKNOWN_OPTION', 'colour');
    await expectError(await raw('/v1/purify?steps=51', png), 400, 'BAD_OPTION', 'steps');
    await expectError(await raw('/v1/purify?draws=17', png), 400, 'BAD_OPTION', 'draws');
    await expectError(await raw('/v1/purify?draws=2&draws=3', png), 400, 'BAD_OPTION', 'draws');
    await expectError(await raw('/v1/purify?mode=magic', png), 400, 'BAD_OPTION', 'mode');
    await expectError(await raw('/v1/purify?tStar=5&steps=10', png), 400, 'BAD_OPTION', 'steps'); // steps <= tStar
    const json = JSON.stringify({ image: png.toString('base64'), options: { tStar: 0 } });
    await expectError(await post('/v1/purify', json, { 'content-type': 'application/json' }), 400, 'BAD_OPTION', 'tStar');
    const extra = JSON.stringify({ image: png.toString('base64'), extra: 1 });
    await expectError(await post('/v1/purify', extra, { 'content-type': 'application/json' }), 400, 'UNKNOWN_FIELD', 'extra');
  });

  it('too many form parts, fields or files', async () => {
    const parts = new FormData();
    parts.append('image', new Blob([u8(png)]), 'a.png');
    parts.append('options', '{}');
    parts.append('more', 'x');
    const r = await post('/v1/purify', parts);
    expect(r.status).toBe(413);
    expect(['TOO_MANY_PARTS', 'TOO_MANY_FIELDS']).toContain(((await r.json()) as { error: { code: string } }).error.code);
    const files = new FormData();
    files.append('image', new Blob([u8(png)]), 'a.png');
    files.append('image', new Blob([u8(png)]), 'b.png');
    await expectError(await post('/v1/purify', files), 413, 'TOO_MANY_FILES');
    const noImage = new FormData();
    noImage.append('options', '{}');
    await expectError(await post('/v1/purify', noImage), 400, 'MISSING_IMAGE', 'image');
  });

  it('after all that, the server still serves', async () => {
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    expect((await raw('/v1/purify?mode=none', png)).status).toBe(200);
  });
});

describe('under load', () => {
  it('serves a few hundred cheap requests in micro-batches without leaking tensors', async () => {
    await raw('/v1/purify?mode=none', png); // settle caches before the baseline
    const [before] = await s.pool.workerStats(10_000);
    let sent = 0;
    const statuses: number[] = [];
    const client = async () => {
      while (sent < 200) {
        const i = sent++;
        const path = i % 60 === 0 ? '/v1/classify?mode=oneshot' : i % 20 === 0 ? '/v1/purify?mode=oneshot' : '/v1/purify?mode=none';
        const r = await raw(path, png);
        await r.arrayBuffer();
        statuses.push(r.status);
      }
    };
    await Promise.all(Array.from({ length: 10 }, client)); // 10 clients = worker slots (2 x maxBatch 4) + queue (2)
    expect(statuses.filter((x) => x !== 200)).toEqual([]);
    const [after] = await s.pool.workerStats(10_000);
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.tasks - before.tasks).toBeGreaterThanOrEqual(200);
    expect(after.largestBatch).toBeGreaterThan(1); // requests arriving together were batched
    expect(await metric('advpurify_batch_size_count')).toBeGreaterThan(200);
  });

  it('overload returns 503 with Retry-After at once, not a hang; the rest succeed', async () => {
    const shedBefore = await metric('advpurify_shed_total');
    const t0 = Date.now();
    const rs = await Promise.all(
      Array.from({ length: 20 }, () =>
        raw('/v1/purify?steps=2', png).then(async (r) => ({ status: r.status, retry: r.headers.get('retry-after'), conn: r.headers.get('connection'), id: r.headers.get('x-request-id'), body: await r.text(), at: Date.now() - t0 })),
      ),
    );
    const shed = rs.filter((r) => r.status === 503);
    const ok = rs.filter((r) => r.status === 200);
    expect(shed.length + ok.length).toBe(20);
    expect(ok.length).toBeGreaterThanOrEqual(10); // 8 slots in the worker (2 x maxBatch) + 2 queued
    expect(shed.length).toBeGreaterThan(0);
    for (const r of shed) {
      expect(Number(r.retry)).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(r.body).error.code).toBe('QUEUE_FULL');
      expect(r.conn).toBe('close'); // refused before Express, keep-alive off under overload
      expect(r.id).toMatch(/^[\w-]{36}$/);
    }
    expect(Math.max(...shed.map((r) => r.at))).toBeLessThan(Math.max(...ok.map((r) => r.at)));
    expect((await metric('advpurify_shed_total')) - shedBefore).toBe(shed.length);
  });

  it('a deadline gives 504 (a client may shorten it with X-Deadline-Ms)', async () => {
    await expectError(await raw('/v1/purify', png, 'image/png', { 'x-deadline-ms': '1' }), 504, 'DEADLINE_EXCEEDED');
    await expectError(await raw('/v1/purify', png, 'image/png', { 'x-deadline-ms': 'soon' }), 400, 'BAD_HEADER');
    await until(idle); // work already in the worker runs to completion; its result is dropped
  });

  it('a client that disconnects cancels its queued work', async () => {
    const events: TaskEvent[] = [];
    const listen = (e: TaskEvent) => events.push(e);
    s.pool.on('task', listen);
    try {
      await until(idle);
      const [before] = await s.pool.workerStats(10_000);
      const slots = s.pool.slotsPerWorker;
      expect(slots).toBe(8); // a running batch of up to maxBatch 4, and the next one forming
      const busy = Array.from({ length: slots }, () => raw('/v1/purify', png).then((r) => r.arrayBuffer())); // fill the worker's slots
      await until(() => s.pool.inFlight === slots);
      const ac = new AbortController();
      const gone = fetch(`${s.url}/v1/purify?mode=oneshot`, { method: 'POST', body: u8(png), headers: { 'content-type': 'image/png' }, signal: ac.signal }).catch(() => 'aborted');
      await until(() => s.pool.queueDepth === 1);
      ac.abort();
      expect(await gone).toBe('aborted');
      await until(() => s.pool.queueDepth === 0);
      await Promise.all(busy);
      await until(() => events.length >= slots + 1);
      expect(events.filter((e) => e.outcome === 'cancelled').length).toBe(1);
      expect(events.filter((e) => e.outcome === 'ok').length).toBe(slots);
      const [after] = await s.pool.workerStats(10_000);
      expect(after.tasks - before.tasks).toBe(slots); // the cancelled one never reached the worker
    } finally {
      s.pool.off('task', listen);
    }
  });
});

describe('failures', () => {
  it('a killed worker fails only its own requests (5xx) and is replaced; the next request succeeds', async () => {
    const errorsBefore = await metric('advpurify_errors_total', { code: 'WORKER_FAILED' });
    const inflight = raw('/v1/purify?tStar=500&steps=50', png); // long enough to kill the worker mid-way
    await until(() => s.pool.inFlight === 1);
    const [victim] = s.pool.threads;
    await victim.terminate();
    await expectError(await inflight, 500, 'WORKER_FAILED');
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const next = await raw('/v1/purify?mode=none', png); // waits for the replacement to load the models
    expect(next.status).toBe(200);
    expect(s.pool.threads[0].threadId).not.toBe(victim.threadId);
    expect((await fetch(`${s.url}/readyz`)).status).toBe(200);
    expect((await metric('advpurify_errors_total', { code: 'WORKER_FAILED' })) - errorsBefore).toBe(1);
  });

  it('a model path without weights fails at start-up, before any worker starts', async () => {
    await expect(startServer({ port: 0, host: '127.0.0.1', model: '/no/such/models', logger: false })).rejects.toMatchObject({ code: 'UNKNOWN_MODEL' });
  });

  it('metrics move: requests by mode, errors by code, queue depth, worker tensors, process metrics', async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(text).toMatch(/advpurify_request_duration_seconds_count\{route="\/v1\/purify",mode="none",status="200"\} [1-9]/);
    expect(text).toMatch(/advpurify_request_duration_seconds_count\{route="\/v1\/classify",mode="oneshot",status="200"\} [1-9]/);
    expect(text).toMatch(/advpurify_errors_total\{code="UNSUPPORTED_MEDIA_TYPE",status="415"\} [1-9]/);
    expect(text).toMatch(/advpurify_queue_depth 0/);
    expect(text).toMatch(/advpurify_worker_tensors\{thread="\d+"\} \d+/);
    expect(text).toMatch(/process_resident_memory_bytes \d+/);
    expect(text).toMatch(/nodejs_eventloop_lag_p99_seconds/);
  });
});
