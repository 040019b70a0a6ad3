/**
 * Server benchmark (`npm run bench:server`), not a test.
 *
 * 1. Starts the server in a child process (so its main thread's event loop is measured alone).
 * 2. Offline throughput: `workers` threads each purify batches of `maxBatch` images with the same
 *    options, no HTTP: the ceiling the server is compared with.
 * 3. autocannon on loopback at 1, 16, 64, 256 connections (POST /v1/purify, a PNG), while a prober
 *    in its own thread GETs /healthz every 20 ms: req/s (purifications completed in the window, from the server's metrics), p50/p99 latency of 200s, 503 rate, other errors, event-loop p99 of the
 *    server's main thread (prom-client's, reset by each scrape), /healthz p99.
 * 4. `--soak N`: N cheap requests (mode none); worker tensors and process RSS before/after
 *    (`--connections none --soak 10000` for the soak alone).
 * Prints Markdown.
 *
 *   npm run bench:server -- [--mode diffpure|oneshot|none] [--workers N] [--duration S]
 *                           [--connections 1,16,64,256] [--max-batch 16] [--soak 10000] [--model DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { isMainThread, Worker } from 'node:worker_threads';
import autocannon from 'autocannon';
import { Piscina } from 'piscina';
import sharp from 'sharp';
// static imports: in piscina threads this file is loaded through require() (tsx's CJS hooks), where a
// dynamic import() would bypass tsx
import { tf, type Tensor4D } from '../src/backend/index.js';
import { createPurifier } from '../src/purify/index.js';
import { startServer } from '../src/server/index.js';

const self = fileURLToPath(import.meta.url);

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

const mode = flag('mode', 'diffpure');
const workers = Number(flag('workers', String(availableParallelism())));
const duration = Number(flag('duration', '10'));
const connections = flag('connections', '1,16,64,256').split(',').filter((c) => /^\d+$/.test(c)).map(Number); // 'none': soak only
const maxBatch = Number(flag('max-batch', '16'));
const soak = Number(flag('soak', '0'));
const model = flag('model', 'fashion-mnist');

// ---- offline worker task (runs inside piscina threads) -------------------------------------------

/** Purify `iterations` batches of `batch` random images; returns images done and seconds taken. */
export async function offlineBatches(a: { mode: string; batch: number; iterations: number; model: string }): Promise<{ images: number; seconds: number }> {
  const p = await createPurifier({ model: a.model, mode: a.mode as 'diffpure', validate: false });
  const x = tf.randomUniform([a.batch, 28, 28, 1], 0, 1, 'float32', 1) as Tensor4D;
  p.purify(x.slice(0, 1)).dispose(); // warm
  const t0 = performance.now();
  for (let i = 0; i < a.iterations; i++) {
    const y = p.purify(x);
    await y.data();
    y.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  x.dispose();
  return { images: a.batch * a.iterations, seconds };
}

// ---- server child ----------------------------------------------------------------------------------

async function serveChild(): Promise<void> {
  const s = await startServer({ port: 0, host: '127.0.0.1', workers, maxBatch, model, defaults: { mode: mode as 'diffpure' }, logger: false, maxQueue: 64 * workers });
  process.stdout.write(`${JSON.stringify({ url: s.url })}\n`);
  process.once('SIGTERM', () => void s.close().then(() => process.exit(0)));
}

function startChild(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', self, '--child', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ADVPURIFY_QUIET: '1' } });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ url: (JSON.parse(line) as { url: string }).url, child });
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

// ---- measurement -------------------------------------------------------------------------------------

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), (m.get(line.slice(0, i)) ?? 0) + Number(line.slice(i + 1)));
  }
  return m;
}
const sumOf = (m: Map<string, number>, prefix: string) => [...m].filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);

/**
 * GET /healthz in a loop until stopped; latencies in ms. The prober has its own thread and event loop,
 * as an orchestrator's probe has its own process: autocannon's busy loop in this thread would
 * otherwise delay the probe's timers and responses and be counted as server latency.
 */
function probeHealth(url: string): { stop: () => Promise<number[]> } {
  const code = `
const { parentPort, workerData } = require('node:worker_threads');
let on = true;
const lat = [];
parentPort.once('message', () => { on = false; });
(async () => {
  while (on) {
    const t = performance.now();
    await fetch(workerData.url + '/healthz').then((r) => r.arrayBuffer());
    lat.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 20));
  }
  parentPort.postMessage(lat);
})();`;
  const w = new Worker(code, { eval: true, workerData: { url } });
  const done = new Promise<number[]>((resolve, reject) => {
    w.once('message', (lat: number[]) => resolve(lat));
    w.once('error', reject);
  });
  return {
    stop: async () => {
      w.postMessage('stop');
      const lat = await done;
      await w.terminate();
      return lat;
    },
  };
}

interface Level {
  connections: number;
  rps: number;
  responsesPerS: number;
  p50: number;
  p99: number;
  shedPct: number;
  otherErrors: number;
  loopP99: number;
  healthP99: number;
  meanBatch: number;
  seconds: number;
}

/** Purifications that ended in a result, so far. */
function purified(m: Map<string, number>): number {
  return [...m].filter(([k]) => k.startsWith('advpurify_tasks_total{kind="purify"') && k.includes('outcome="ok"')).reduce((a, [, v]) => a + v, 0);
}

/** Wait until the server has no queued or running tasks (abandoned requests of the last level). */
async function drain(url: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const m = await scrape(url);
    if ((m.get('advpurify_in_flight') ?? 0) + (m.get('advpurify_queue_depth') ?? 0) === 0) return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function level(url: string, body: Buffer, c: number, query: string, seconds: number, amount?: number): Promise<Level> {
  await drain(url);
  const m0 = await scrape(url); // also resets the event-loop histogram
  const t0 = performance.now();
  const probe = probeHealth(url);
  const lat: number[] = [];
  const status = new Map<number, number>();
  const inst = autocannon({
    url: `${url}/v1/purify${query}`,
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body,
    connections: c,
    ...(amount ? { amount } : { duration: seconds }),
    timeout: 120,
  });
  inst.on('response', (_client: unknown, code: number, _bytes: number, ms: number) => {
    status.set(code, (status.get(code) ?? 0) + 1);
    if (code === 200) lat.push(ms);
  });
  const r = await inst;
  const m = await scrape(url);
  const wall = (performance.now() - t0) / 1000;
  const health = await probe.stop();
  const total = [...status.values()].reduce((a, b) => a + b, 0) + r.errors;
  const ok = status.get(200) ?? 0;
  return {
    connections: c,
    seconds: wall,
    // server-side completions in the window: autocannon does not count requests still in flight when it stops
    rps: (purified(m) - purified(m0)) / wall,
    responsesPerS: total / wall,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    shedPct: (100 * (status.get(503) ?? 0)) / Math.max(1, total),
    otherErrors: total - ok - (status.get(503) ?? 0),
    loopP99: 1000 * (m.get('nodejs_eventloop_lag_p99_seconds') ?? NaN),
    healthP99: pct(health, 99),
    meanBatch: (sumOf(m, 'advpurify_batch_size_sum') - sumOf(m0, 'advpurify_batch_size_sum')) / Math.max(1, sumOf(m, 'advpurify_batch_size_count') - sumOf(m0, 'advpurify_batch_size_count')),
  };
}

async function offline(): Promise<number> {
  const pool = new Piscina({ filename: self, name: 'offlineBatches', minThreads: workers, maxThreads: workers, execArgv: ['--import', 'tsx'] });
  // about as long as a load level (10 s), so both see the same shared-VM weather
  const iterations = mode === 'none' ? 200 : mode === 'oneshot' ? 24 : 8;
  const t0 = performance.now();
  const rs: { images: number; seconds: number }[] = await Promise.all(Array.from({ length: workers }, () => pool.run({ mode, batch: maxBatch, iterations, model })));
  void t0;
  await pool.destroy();
  // each thread's own rate, summed: start-up of the threads is not throughput
  return rs.reduce((a, r) => a + r.images / r.seconds, 0);
}

async function main(): Promise<void> {
  const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#6a4a3a' } })
    .composite([{ input: Buffer.from('<svg width="40" height="30"><circle cx="20" cy="15" r="10" fill="#eee"/></svg>') }])
    .png()
    .toBuffer();
  const { url, child } = await startChild();
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  try {
    process.stderr.write(`server ready at ${url}\n`);
    const offBefore = connections.length > 0 ? await offline() : NaN;
    const rows: Level[] = [];
    for (const c of connections) {
      process.stderr.write(`${c} connections for ${duration} s...\n`);
      rows.push(await level(url, png, c, '', duration));
    }
    // offline again after the levels: the ceiling is their mean (a 2-core VM's speed drifts over minutes)
    const offAfter = connections.length > 0 ? await offline() : NaN;
    const off = (offBefore + offAfter) / 2;
    const out: string[] = [];
    out.push(`## advpurify server benchmark: mode ${mode}, ${workers} workers, max batch ${maxBatch}, ${duration} s per level`, '');
    if (rows.length > 0) {
      out.push(`Offline batched purify throughput (same run, ${workers} threads x batch ${maxBatch}, no HTTP): **${f(off)} img/s** (mean of ${f(offBefore)} before and ${f(offAfter)} after the load levels)`, '');
      out.push('| connections | req/s | responses/s | p50 ms | p99 ms | 503 % | other errors | mean batch | event-loop p99 ms | /healthz p99 ms |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
      for (const r of rows) out.push(`| ${r.connections} | ${f(r.rps)} | ${f(r.responsesPerS, 0)} | ${f(r.p50, 0)} | ${f(r.p99, 0)} | ${f(r.shedPct)} | ${r.otherErrors} | ${f(r.meanBatch)} | ${f(r.loopP99)} | ${f(r.healthP99)} |`);
      const at64 = rows.find((r) => r.connections === 64);
      out.push('', 'Goals:');
      if (at64) out.push(`- req/s at 64 connections / offline = ${f(at64.rps / off, 2)} (goal >= 0.85)`);
      out.push(`- /healthz p99 under load: max ${f(Math.max(...rows.map((r) => r.healthP99)))} ms (goal < 50)`);
      out.push(`- errors other than shed 503s: ${rows.reduce((a, r) => a + r.otherErrors, 0)} (goal 0)`);
    }
    if (soak > 0) {
      process.stderr.write(`soak: ${soak} requests (mode none)...\n`);
      await level(url, png, 16, '?mode=none', 0, Math.min(1000, soak)); // warm caches and allocator
      const rss = (m: Map<string, number>) => (m.get('process_resident_memory_bytes') ?? NaN) / 2 ** 20;
      const before = await scrape(url);
      const marks: string[] = [];
      let ok = 0;
      let errors = 0;
      let seconds = 0;
      let after = before;
      for (let i = 0; i < 4; i++) {
        const r = await level(url, png, 16, '?mode=none', 0, Math.ceil(soak / 4));
        ok += r.rps * r.seconds;
        seconds += r.seconds;
        errors += r.otherErrors + Math.round((r.shedPct / 100) * Math.ceil(soak / 4));
        after = await scrape(url);
        marks.push(`${f(rss(after))}`);
      }
      const [r0, r1] = [rss(before), rss(after)];
      const [t0, t1] = [sumOf(before, 'advpurify_worker_tensors'), sumOf(after, 'advpurify_worker_tensors')];
      out.push('', `Soak: ${soak} requests (mode none, 16 connections, after 1000 warm-up): ${f(ok / seconds)} req/s, ${errors} non-200`);
      out.push(`- process RSS ${f(r0)} MiB -> ${marks.join(' -> ')} MiB after each quarter (${f((100 * (r1 - r0)) / r0)} %, goal within 5 %)`);
      out.push(`- tensors in all workers ${t0} -> ${t1} (goal: equal)`);
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    child.kill('SIGTERM');
  }
}

// no top-level await: piscina loads this file in its threads through require() (tsx's CJS path)
if (isMainThread) {
  (process.argv.includes('--child') ? serveChild() : main()).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
