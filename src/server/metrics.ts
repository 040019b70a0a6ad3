/**
 * Prometheus metrics (prom-client, one registry per server): request latency by route/mode/status,
 * pool latency and batch sizes from the workers, queue depth, in-flight tasks, shed and error
 * counters, event-loop delay, tensors alive per worker (a leak shows here), default process metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EventLoopMonitor, HttpError, PurifyPool, TaskEvent } from '../middleware/index.js';

export interface Metrics {
  registry: Registry;
  /** Record a finished HTTP request. */
  request(route: string, mode: string, status: number, seconds: number): void;
  /** Record an error rendered to a client. */
  error(e: HttpError): void;
}

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export function createMetrics(pool: PurifyPool, lag: EventLoopMonitor): Metrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const requestSeconds = new Histogram({
    name: 'advpurify_request_duration_seconds',
    help: 'HTTP request latency of the purification endpoints, by route, purification mode and status',
    labelNames: ['route', 'mode', 'status'],
    buckets: SECONDS,
    registers,
  });
  const taskSeconds = new Histogram({
    name: 'advpurify_task_duration_seconds',
    help: 'Time from a task entering the pool to its result (queue + batch), by kind and mode',
    labelNames: ['kind', 'mode'],
    buckets: SECONDS,
    registers,
  });
  const queueSeconds = new Histogram({ name: 'advpurify_queue_wait_seconds', help: 'Time tasks waited for a worker slot', buckets: SECONDS, registers });
  const batchSize = new Histogram({
    name: 'advpurify_batch_size',
    help: 'Micro-batch size each purified image was part of',
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers,
  });
  const tasks = new Counter({ name: 'advpurify_tasks_total', help: 'Pool tasks by outcome', labelNames: ['kind', 'mode', 'outcome'], registers });
  const shed = new Counter({ name: 'advpurify_shed_total', help: 'Requests refused with 503 to shed load, by reason', labelNames: ['reason'], registers });
  const errors = new Counter({ name: 'advpurify_errors_total', help: 'Error responses by code and status', labelNames: ['code', 'status'], registers });
  new Gauge({
    name: 'advpurify_queue_depth',
    help: 'Tasks waiting for a worker slot',
    registers,
    collect() {
      this.set(pool.queueDepth);
    },
  });
  new Gauge({
    name: 'advpurify_in_flight',
    help: 'Tasks inside worker threads',
    registers,
    collect() {
      this.set(pool.inFlight);
    },
  });
  new Gauge({
    name: 'advpurify_workers_ready',
    help: 'Worker threads with models loaded',
    registers,
    collect() {
      this.set(pool.readiness().readyWorkers);
    },
  });
  new Gauge({
    name: 'advpurify_event_loop_delay_p99_seconds',
    help: 'p99 event-loop delay of the main thread over the last window (load shedding input)',
    registers,
    collect() {
      this.set(lag.p99Ms / 1000);
    },
  });
  const lastTensors = new Map<number, number>();
  new Gauge({
    name: 'advpurify_worker_tensors',
    help: 'tf.memory().numTensors in each worker (flat under load, else a leak)',
    labelNames: ['thread'],
    registers,
    async collect() {
      // a worker busy with a batch answers late; keep its last value
      for (const s of await pool.workerStats(250)) lastTensors.set(s.threadId, s.numTensors);
      const live = new Set(pool.threads.map((t) => t.threadId));
      this.reset();
      for (const [thread, n] of lastTensors) {
        if (live.has(thread)) this.set({ thread: String(thread) }, n);
        else lastTensors.delete(thread);
      }
    },
  });

  pool.on('task', (e: TaskEvent) => {
    tasks.inc({ kind: e.kind, mode: e.mode, outcome: e.outcome });
    if (e.outcome === 'ok') {
      taskSeconds.observe({ kind: e.kind, mode: e.mode }, e.ms / 1000);
      queueSeconds.observe(e.queueMs / 1000);
      if (e.batchSize) batchSize.observe(e.batchSize);
    }
  });

  return {
    registry,
    request(route, mode, status, seconds) {
      requestSeconds.observe({ route, mode, status: String(status) }, seconds);
    },
    error(e) {
      errors.inc({ code: e.code, status: String(e.status) });
      if (e.status === 503 && (e.code === 'QUEUE_FULL' || e.code === 'OVERLOADED')) shed.inc({ reason: e.code === 'QUEUE_FULL' ? 'queue_full' : 'event_loop_delay' });
    },
  };
}
