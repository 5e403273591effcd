/**
 * `diad serve`'s HTTP server (Fastify): `POST /v1/score` takes one image (raw bytes of any content
 * type, or multipart/form-data with one file) and answers JSON: image score, decision, class-
 * normalised score, optionally the heatmap PNG. Images are decoded with limits (bytes, pixels),
 * batched ({@link Batcher}) and scored by the {@link ServedModel}. `/healthz` (alive), `/readyz`
 * (accepting work), `/metrics` (Prometheus). No request value is ever used as a path: the model
 * was loaded from its bundle before the server started.
 */
import multipart from '@fastify/multipart';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { concatBatch, sliceBatch, type HostTensor } from '@diad/core';
import { encodePng, ImageDecodeError, overlayHeatmap, rgbToTensor } from '@diad/datasets';
import { UploadDecoder } from './decoder.js';
import { Batcher, QueueFullError, RequestTimeoutError, type BatcherOptions } from './batcher.js';
import { serverMetrics, type ServerMetrics } from './metrics.js';
import type { ServedModel } from './model.js';

/** Options of {@link createServer}; every field has a default. */
export interface ServeOptions extends Partial<BatcherOptions> {
  /** Largest request body in bytes (default 20 MiB); larger answers 413. */
  maxBytes?: number;
  /** Largest image, width x height (default 40 M pixels); larger answers 413 before decoding. */
  maxPixels?: number;
  /** Worker threads decoding uploads (default 2). */
  decodeThreads?: number;
}

/** The defaults of {@link ServeOptions}. */
export const SERVE_DEFAULTS: Required<ServeOptions> = {
  maxBatch: 8,
  maxWaitMs: 10,
  maxQueue: 64,
  timeoutMs: 60_000,
  maxBytes: 20 * 1024 * 1024,
  maxPixels: 40_000_000,
  decodeThreads: 2,
};

/** The answer of `POST /v1/score`. */
export interface ScoreResponse {
  /** Image score: the maximum of the anomaly map. */
  score: number;
  /** Anomalous when the score is at or above the model's threshold. */
  anomalous: boolean;
  /** The class given with `?class=`, or null. */
  class: string | null;
  /** `(score - mean) / std` of the class's normal validation scores; null without a class, or for a class with fewer than two normal validation images. */
  classScore: number | null;
  /** With `?heatmap=1`: the anomaly map over the resized input (jet colours), a base64 PNG of S x S pixels. */
  heatmapPng?: string;
}

/** A running server and its controls. */
export interface DiadServer {
  app: FastifyInstance;
  metrics: ServerMetrics;
  /** Stops taking requests (`/readyz` and new scores answer 503), finishes those in flight, closes the server. Idempotent. */
  shutdown(): Promise<void>;
}

/** An error with the HTTP status and the reason counted in metrics. */
class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

/** An error as (status, reason, message, Retry-After): the one place errors map to HTTP. */
function classify(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof ImageDecodeError)
    return new HttpError(e.reason === 'too-large' ? 413 : 400, e.reason === 'too-large' ? 'too_large' : 'bad_image', e.message);
  if (e instanceof QueueFullError) return new HttpError(503, 'queue_full', e.message, e.retryAfterSeconds);
  if (e instanceof RequestTimeoutError) return new HttpError(504, 'timeout', e.message);
  const fe = e as FastifyError;
  if (fe?.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
    const reason = fe.statusCode === 413 ? 'too_large' : 'bad_request';
    return new HttpError(fe.statusCode, reason, fe.statusCode === 413 ? `${fe.message}: upload a smaller image` : fe.message);
  }
  return new HttpError(500, 'internal', 'internal error while scoring; see the server log');
}

/** The server's paths and their methods (the `Allow` header of a 405). */
const ROUTES: Record<string, string> = { '/v1/score': 'POST', '/healthz': 'GET, HEAD', '/readyz': 'GET, HEAD', '/metrics': 'GET, HEAD' };

/** `?heatmap=` values: on, off. */
const HEATMAP_VALUES: Record<string, boolean> = { '': true, '1': true, true: true, '0': false, false: false };

/**
 * Builds the server (not yet listening) around a loaded model.
 * @throws Error for an out-of-range option.
 */
export async function createServer(model: ServedModel, options: ServeOptions = {}): Promise<DiadServer> {
  const o = { ...SERVE_DEFAULTS, ...options };
  for (const k of ['maxBytes', 'maxPixels'] as const) if (!(Number.isInteger(o[k]) && o[k] > 0)) throw new Error(`${k} ${o[k]}: give a positive whole number`);
  const S = model.imageSize;
  const decoder = new UploadDecoder(S, o.maxPixels, o.decodeThreads);
  // The queue-depth gauge reads the batcher at scrape time, after both exist.
  const m = serverMetrics(() => batcher.depth, o.maxBatch);
  const batcher = new Batcher<HostTensor, { score: number; map: Float32Array }>(
    async (items) => {
      const { scores, maps } = await model.score(concatBatch(items));
      return scores.map((score, i) => ({ score, map: sliceBatch(maps, i, i + 1).data as Float32Array }));
    },
    o,
    (size) => m.batchSize.observe(size),
  );
  let draining = false;
  let closing: Promise<void> | null = null;

  const app = Fastify({ bodyLimit: o.maxBytes, requestTimeout: o.timeoutMs + 5_000, return503OnClosing: true, logger: false });
  // Every body arrives as bytes, whatever its declared type: the image decoder decides what it is.
  app.removeAllContentTypeParsers();
  await app.register(multipart, { limits: { fileSize: o.maxBytes, files: 2, fields: 8 } });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    m.requests.inc({ route, code: String(reply.statusCode) });
    m.latency.observe({ route }, reply.elapsedTime / 1000);
  });
  // While draining, every response closes its connection, so keep-alive clients do not hold the close open.
  app.addHook('onSend', async (_req, reply) => {
    if (draining) void reply.header('Connection', 'close');
  });
  app.setErrorHandler((e, _req, reply) => sendError(reply, classify(e)));
  app.setNotFoundHandler((req, reply) => {
    // A known path with another method is 405 with the methods it takes (Fastify answers both with 404).
    const allow = ROUTES[req.url.split('?')[0]];
    if (allow) {
      void reply.header('Allow', allow);
      return sendError(reply, new HttpError(405, 'method_not_allowed', `${req.method} ${req.url.split('?')[0]}: use ${allow}`));
    }
    return sendError(reply, new HttpError(404, 'not_found', `no route ${req.method} ${req.url}; POST /v1/score, GET /healthz, /readyz, /metrics`));
  });

  function sendError(reply: FastifyReply, h: HttpError) {
    if (h.statusCode >= 400 && h.reason !== 'not_found' && h.reason !== 'method_not_allowed') m.errors.inc({ reason: h.reason });
    if (h.retryAfter !== undefined) void reply.header('Retry-After', String(h.retryAfter));
    return reply.code(h.statusCode).send({ error: h.message, reason: h.reason });
  }

  async function imageBytes(req: FastifyRequest): Promise<Uint8Array> {
    if (req.isMultipart()) {
      let image: Buffer | null = null;
      for await (const file of req.files()) {
        if (image) throw new HttpError(400, 'bad_request', 'multipart body with more than one file: send one image per request');
        image = await file.toBuffer(); // throws a 413 error past maxBytes
      }
      if (!image) throw new HttpError(400, 'bad_request', 'multipart body without a file: send the image as one file field');
      return new Uint8Array(image.buffer, image.byteOffset, image.length);
    }
    const body = req.body;
    if (body === undefined || body === null) return new Uint8Array(0);
    if (!Buffer.isBuffer(body)) throw new HttpError(400, 'bad_request', 'send the image bytes as the body (or multipart/form-data)');
    return new Uint8Array(body.buffer, body.byteOffset, body.length);
  }

  app.post('/v1/score', async (req, reply): Promise<ScoreResponse> => {
    if (draining) throw new HttpError(503, 'shutting_down', 'the server is shutting down; retry on another instance', 5);
    const q = req.query as { class?: string; heatmap?: string };
    const className = q.class ?? null;
    if (className !== null && !model.classes.includes(className))
      throw new HttpError(
        400,
        'bad_request',
        `unknown class ${JSON.stringify(className)}; this model knows ${model.classes.join(', ') || 'no classes'} (or leave out ?class=)`,
      );
    const heatmap = q.heatmap === undefined ? false : HEATMAP_VALUES[q.heatmap];
    if (heatmap === undefined)
      throw new HttpError(400, 'bad_request', `heatmap=${q.heatmap}: use heatmap=1 (or true) for the heatmap, 0 (or false) or nothing for none`);
    // Admission before any decoding: uploads being decoded count toward the queue.
    if (decoder.inFlight + batcher.depth >= o.maxQueue) throw new QueueFullError(batcher.retryAfterSeconds());
    const rgb = await decoder.decode(await imageBytes(req));
    const { score, map } = await batcher.submit(rgbToTensor([rgb]));
    const j = model.judge(score, className);
    const out: ScoreResponse = { score, anomalous: j.anomalous, class: className, classScore: j.classScore };
    if (heatmap) {
      const heat = overlayHeatmap(map, rgb.data, model.mapRange[0], model.mapRange[1]);
      out.heatmapPng = Buffer.from(await encodePng({ data: heat, width: S, height: S, channels: 3 })).toString('base64');
    }
    void reply.header('Cache-Control', 'no-store');
    return out;
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const ready = !draining && decoder.inFlight + batcher.depth < o.maxQueue;
    void reply.code(ready ? 200 : 503);
    return { ready, draining, queueDepth: batcher.depth, maxQueue: o.maxQueue, model: model.description };
  });
  app.get('/metrics', async (_req, reply) => {
    void reply.header('Content-Type', m.registry.contentType);
    return m.registry.metrics();
  });

  return {
    app,
    metrics: m,
    shutdown() {
      draining = true;
      // Fastify's close waits for the requests in flight (each awaits its batch); new ones get 503.
      closing ??= app
        .close()
        .then(() => batcher.drain())
        .then(() => decoder.close());
      return closing;
    },
  };
}
