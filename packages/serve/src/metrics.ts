/**
 * The server's Prometheus metrics (prom-client, one registry per server): requests by route and
 * status, latency histogram, queue depth, batch sizes, errors by reason, and the process's default
 * metrics (resident memory, heap, event-loop lag).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ServerMetrics {
  registry: Registry;
  requests: Counter<'route' | 'code'>;
  latency: Histogram<'route'>;
  queueDepth: Gauge;
  batchSize: Histogram;
  errors: Counter<'reason'>;
}

/** A fresh registry with the server's metrics; `queueDepth` reads `depth()` at each scrape. */
export function serverMetrics(depth: () => number, maxBatch: number): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'diad_serve_' });
  return {
    registry,
    requests: new Counter({
      name: 'diad_serve_requests_total',
      help: 'HTTP requests by route and status code',
      labelNames: ['route', 'code'],
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'diad_serve_request_duration_seconds',
      help: 'Time from request to response, seconds',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'diad_serve_queue_depth',
      help: 'Images waiting for a batch',
      registers: [registry],
      collect() {
        this.set(depth());
      },
    }),
    batchSize: new Histogram({
      name: 'diad_serve_batch_size',
      help: 'Images per model batch',
      buckets: Array.from({ length: maxBatch }, (_, i) => i + 1),
      registers: [registry],
    }),
    errors: new Counter({ name: 'diad_serve_errors_total', help: 'Failed score requests by reason', labelNames: ['reason'], registers: [registry] }),
  };
}
