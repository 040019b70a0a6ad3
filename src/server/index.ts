/**
 * The purification server (`advpurify serve`, `npm start`):
 *   POST /v1/purify    image in -> purified PNG out (JSON with base64 if the client Accepts only JSON);
 *                      modes patch/auto: the inpainted region's box in X-Purify-Mask-Box headers (JSON: `mask`)
 *   POST /v1/classify  image in -> { label, probabilities, votes, purified }
 *   GET  /healthz      liveness: the process answers
 *   GET  /readyz       readiness: a worker has its models loaded (503 until then)
 *   GET  /metrics      Prometheus text
 * Shipped Fashion-MNIST models by default. JSON logs (pino) on stdout.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Request, type Response, type NextFunction } from 'express';
import { pino, type Logger } from 'pino';
import {
  classifyHandler,
  errorHandler,
  EventLoopMonitor,
  HttpError,
  maskJson,
  overloaded,
  SHED_CHECKED,
  purifyMiddleware,
  PurifyPool,
  type ClientOptions,
  type OptionName,
  type Rect,
} from '../middleware/index.js';
import { createMetrics, type Metrics } from './metrics.js';

export interface ServerOptions {
  /** default: $PORT, else 3000; 0 picks a free port */
  port?: number;
  /** default: all interfaces */
  host?: string;
  /** shipped model name or a directory with diffusion.{json,bin} and classifier.{json,bin} (default fashion-mnist) */
  model?: string;
  /** classifier weights (name or path) for /v1/classify; default: the model's own; false: none */
  classifier?: string | false;
  /** worker threads (default: core count) */
  workers?: number;
  maxBatch?: number;
  maxBatchWaitMs?: number;
  /** tasks waiting beyond those in workers before 503s (default 32 per worker) */
  maxQueue?: number;
  /** Linux: worker threads' nice value above the main thread's (default 5; 0: off) */
  workerNice?: number;
  /**
   * close the connection of a request refused with 503 (default true), as Envoy's overload manager
   * turns keep-alive off: keep-alive clients that retry at once (no back-off) then pay a reconnect,
   * which keeps a 503 storm from filling every event-loop turn (measured: /healthz p99 at 256
   * connections 42-52 ms with keep-alive, 16 ms without)
   */
  closeOnShed?: boolean;
  /** per-request deadline, ms (default 30000) -> 504 */
  deadlineMs?: number;
  /** largest upload, bytes (default 4 MiB) -> 413 */
  maxBytes?: number;
  /** largest image, pixels (default 25 MP) -> 413 */
  maxPixels?: number;
  /** shed a share of requests while the event loop's p99 delay exceeds this, ms (default 500; 0: off) */
  maxEventLoopDelayMs?: number;
  /** server-side default purification options (e.g. { mode: 'diffpure', tStar: 200 }) */
  defaults?: ClientOptions;
  /** which options clients may set per request (default: all, within the schema bounds) */
  allowOverrides?: boolean | readonly OptionName[];
  /** a pino logger, or false for none (default: JSON to stdout at $LOG_LEVEL or info) */
  logger?: Logger | false;
  /** resolve only once a worker has loaded the models (default true); rejects if they cannot load */
  waitReady?: boolean;
  /** close gracefully on SIGTERM/SIGINT (default false; the CLI turns it on) */
  handleSignals?: boolean;
}

export interface PurifyServer {
  app: Express;
  /**
   * The HTTP request listener `startServer` uses: refuses POSTs to /v1/* with 503 while the queue is
   * full or the event loop is overloaded *before* Express parses anything, then hands everything
   * else to `app`. Under a retry storm this keeps each refusal to a few microseconds of the main
   * thread, so /healthz and admitted requests still get the event loop.
   */
  listener: (req: IncomingMessage, res: ServerResponse) => void;
  pool: PurifyPool;
  metrics: Metrics;
  logger: Logger;
  close(): Promise<void>;
}

export interface RunningServer extends PurifyServer {
  url: string;
  port: number;
  server: Server;
}

/** The client's X-Request-Id when it is a sane token, else a fresh UUID. */
function requestId(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && /^[\w.-]{1,128}$/.test(h) ? h : randomUUID();
}

/** Build the Express app and its worker pool (not listening). */
export function createApp(o: ServerOptions = {}): PurifyServer {
  const logger = o.logger === false ? pino({ level: 'silent' }) : (o.logger ?? pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'advpurify' } }));
  const pool = new PurifyPool({ model: o.model, classifier: o.classifier, workers: o.workers, maxBatch: o.maxBatch, maxBatchWaitMs: o.maxBatchWaitMs, maxQueue: o.maxQueue, deadlineMs: o.deadlineMs, workerNice: o.workerNice });
  const lag = new EventLoopMonitor(o.maxEventLoopDelayMs ?? 500);
  const metrics = createMetrics(pool, lag);
  const mw = { pool, eventLoopMonitor: lag, allowOverrides: o.allowOverrides ?? true, deadlineMs: o.deadlineMs, maxBytes: o.maxBytes, maxPixels: o.maxPixels, ...o.defaults };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((req, res, next) => {
    const id = requestId(req);
    res.set('X-Request-Id', id);
    const t0 = process.hrtime.bigint();
    res.once('finish', () => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const route = (res.locals.route as string | undefined) ?? 'other';
      const mode = (res.locals.advpurify as { mode?: string } | undefined)?.mode ?? 'unknown';
      if (route.startsWith('/v1/')) metrics.request(route, mode, res.statusCode, ms / 1000);
      const line = { id, method: req.method, url: req.originalUrl, status: res.statusCode, ms: Math.round(ms * 10) / 10, mode: route.startsWith('/v1/') ? mode : undefined, code: res.locals.errorCode };
      // shed 503s are expected under overload (and counted in metrics): logging each would add load
      const shed = res.statusCode === 503 && (res.locals.errorCode === 'QUEUE_FULL' || res.locals.errorCode === 'OVERLOADED');
      if (res.statusCode >= 500 && !shed && route !== '/readyz') logger.warn(line, 'request');
      else if (route.startsWith('/v1/') && !shed) logger.info(line, 'request');
      else logger.debug(line, 'request');
    });
    next();
  });
  const route = (name: string) => (_req: Request, res: Response, next: NextFunction) => {
    res.locals.route = name;
    next();
  };

  app.get('/healthz', route('/healthz'), (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', route('/readyz'), (_req, res) => {
    const r = pool.readiness();
    res.status(r.ready ? 200 : 503).json({ ...r, model: pool.config.diffusion, classifier: pool.config.classifier });
  });
  app.get('/metrics', route('/metrics'), async (_req, res, next) => {
    try {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    } catch (e) {
      next(e);
    }
  });

  const purify = purifyMiddleware(mw);
  app.post('/v1/purify', route('/v1/purify'), purify, (req, res) => {
    const p = req.purified!;
    res.set({ 'Cache-Control': 'no-store', 'X-Purify-Mode': p.mode, 'X-Purify-Draws': String(p.draws), 'X-Purify-Ms': p.ms.toFixed(1), 'X-Batch-Size': String(p.batchSize) });
    if (p.mask) {
      // left,top,width,height; "none" when nothing was inpainted
      const box = (r: Rect | null) => (r ? `${r.left},${r.top},${r.width},${r.height}` : 'none');
      res.set({ 'X-Purify-Mask-Box': box(p.mask.box), 'X-Purify-Mask-Original-Box': box(p.mask.originalBox) });
    }
    if (req.accepts(['image/png', 'application/json']) === 'application/json') {
      const { tensor: _t, png, mask, ...meta } = p;
      res.json({ image: png.toString('base64'), ...meta, ...(mask ? { mask: maskJson(mask) } : {}) });
    } else {
      res.type('image/png').send(p.png);
    }
  });
  app.post('/v1/classify', route('/v1/classify'), classifyHandler(mw));
  for (const path of ['/v1/purify', '/v1/classify']) {
    app.all(path, (_req, _res, next) => next(new HttpError(405, 'METHOD_NOT_ALLOWED', `use POST for ${path}`, undefined, { Allow: 'POST' })));
  }
  app.use((req, _res, next) => next(new HttpError(404, 'NOT_FOUND', `no route for ${req.method} ${req.path}`)));
  app.use(
    errorHandler({
      onError(e, original, req) {
        metrics.error(e);
        req.res!.locals.errorCode = e.code;
        if (e.status >= 500 && e.code === 'INTERNAL') logger.error({ err: original, url: req.originalUrl }, 'unhandled error');
      },
    }),
  );

  const closeOnShed = o.closeOnShed ?? true;
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method === 'POST' && req.url?.startsWith('/v1/')) {
      const q = req.url.indexOf('?');
      const route = q < 0 ? req.url : req.url.slice(0, q);
      if (route === '/v1/purify' || route === '/v1/classify') {
        const t0 = process.hrtime.bigint();
        // same order and decisions as the middleware, which then skips its own event-loop draw
        (req as IncomingMessage & { [SHED_CHECKED]?: boolean })[SHED_CHECKED] = true;
        const e = lag.shouldShed()
          ? overloaded('OVERLOADED', 'the server is overloaded; retry later', 1)
          : pool.saturated
            ? overloaded('QUEUE_FULL', 'the purification queue is full; retry later', pool.retryAfterS())
            : undefined;
        if (e) {
          const id = requestId(req);
          const body = JSON.stringify(e.body);
          res.writeHead(503, { ...e.headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'X-Request-Id': id, ...(closeOnShed ? { Connection: 'close' } : {}) });
          res.end(body);
          metrics.error(e);
          metrics.request(route, 'unknown', 503, Number(process.hrtime.bigint() - t0) / 1e9);
          return; // Node discards the unread request body before reusing the connection
        }
      }
    }
    app(req, res);
  };

  return {
    app,
    listener,
    pool,
    metrics,
    logger,
    async close() {
      lag.close();
      await pool.close();
    },
  };
}

/** Listen, wait for the models (unless `waitReady: false`), return the URL and a graceful `close()`. */
export async function startServer(o: ServerOptions = {}): Promise<RunningServer> {
  const s = createApp(o);
  const port = o.port ?? (process.env.PORT ? Number(process.env.PORT) : 3000);
  const server = createServer(s.listener);
  if (o.host) server.listen(port, o.host);
  else server.listen(port);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  }).catch(async (e: unknown) => {
    await s.close();
    throw e;
  });
  const deadline = o.deadlineMs ?? 30_000;
  server.requestTimeout = deadline + 30_000; // a slow upload cannot hold a socket forever
  server.headersTimeout = 20_000;
  server.keepAliveTimeout = 5_000;
  const addr = server.address() as AddressInfo;
  const host = o.host && o.host !== '0.0.0.0' && o.host !== '::' ? o.host : 'localhost';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const grace = setTimeout(() => server.closeAllConnections(), 10_000);
      await stopped;
      clearTimeout(grace);
      await s.close();
      s.logger.info('server closed');
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    s.logger.info({ signal: sig }, 'shutting down');
    void close().then(() => process.exit(0));
  };
  if (o.handleSignals) {
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }

  const running: RunningServer = { ...s, url, port: addr.port, server, close };
  s.logger.info({ url, workers: s.pool.size, model: s.pool.config.diffusion, classifier: s.pool.config.classifier }, 'listening');
  if (o.waitReady ?? true) {
    try {
      await s.pool.ready;
    } catch (e) {
      await close();
      throw e;
    }
    s.logger.info({ ...s.pool.readiness() }, 'models loaded');
  }
  return running;
}
