/**
 * The server around a small deterministic model (score = max over pixels of the first channel), on
 * a real socket: answers, limits, bad uploads, a full queue, health, metrics and graceful shutdown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32 } from 'node:zlib';
import { tensor, type HostTensor } from '@diad/core';
import { decodeRgb, encodePng, resizeBilinear, rgbToTensor, type RgbImage } from '@diad/datasets';
import { createServer, type DiadServer, type ScoreResponse, type ServedModel } from '../src/index.js';

/** What fetch takes as a body here. */
type Body = string | Uint8Array | FormData;
/** An answer: a score or an error. */
type Answer = ScoreResponse & { error: string };

const S = 16;

/** Score = max of channel 0; map = channel 0. `gate`, when set, holds every batch until resolved. */
function model(): ServedModel & { gate: Promise<void> | null; batches: number[] } {
  const m = {
    imageSize: S,
    classes: ['bottle', 'grid'],
    mapRange: [-2, 2] as const,
    description: { kind: 'test' },
    gate: null as Promise<void> | null,
    batches: [] as number[],
    async score(images: HostTensor) {
      const n = images.shape[0];
      m.batches.push(n);
      if (m.gate) await m.gate;
      const maps = new Float32Array(n * S * S);
      const scores: number[] = [];
      for (let i = 0; i < n; i++) {
        maps.set(images.data.subarray(i * 3 * S * S, i * 3 * S * S + S * S) as Float32Array, i * S * S);
        scores.push(Math.max(...maps.subarray(i * S * S, (i + 1) * S * S)));
      }
      return { scores, maps: tensor(maps, [n, 1, S, S], 'NCHW') };
    },
    judge: (score: number, className?: string | null) => ({ score, anomalous: score >= 1, classScore: className === 'bottle' ? score - 1 : null }),
  };
  return m;
}

/** A PNG whose header claims `w x h` RGB pixels (no pixel data follows). */
function pngHeader(w: number, h: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const type = Buffer.from('IHDR');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([type, ihdr])));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(13);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), len, type, ihdr, crc]);
}

describe('diad serve HTTP server', () => {
  const m = model();
  let server: DiadServer;
  let base: string;
  let png: Buffer;
  let expected: number;

  beforeAll(async () => {
    const raw = new Uint8Array(40 * 30 * 3).map((_, i) => (i * 37) % 256);
    png = Buffer.from(await encodePng({ data: raw, width: 40, height: 30, channels: 3 }));
    const x = rgbToTensor([resizeBilinear(await decodeRgb(png, 1e6), S, S) as RgbImage]);
    expected = Math.max(...(x.data.subarray(0, S * S) as Float32Array));
    server = await createServer(m, { maxBatch: 2, maxWaitMs: 5, maxQueue: 2, timeoutMs: 10_000, maxBytes: 64 * 1024, maxPixels: 4_000_000 });
    base = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await server.shutdown();
  });

  const post = (body: Body, query = '', type = 'image/png') => fetch(`${base}/v1/score${query}`, { method: 'POST', body, headers: { 'content-type': type } });

  it('scores raw bytes and a multipart upload alike: the model score of the decoded, resized, normalised image', async () => {
    const a = await post(png, '?class=bottle');
    expect(a.status).toBe(200);
    const ja = (await a.json()) as Answer;
    expect(ja.score).toBeCloseTo(expected, 6);
    expect(ja).toMatchObject({ anomalous: expected >= 1, class: 'bottle' });
    expect(ja.classScore).toBeCloseTo(expected - 1, 6);
    const form = new FormData();
    form.append('image', new Blob([png], { type: 'image/png' }), 'x.png');
    const b = await fetch(`${base}/v1/score`, { method: 'POST', body: form });
    expect(b.status).toBe(200);
    expect(await b.json()).toEqual({ ...ja, class: null, classScore: null });
  });

  it('?heatmap=1 adds the map as an S x S PNG', async () => {
    const r = (await (await post(png, '?heatmap=1')).json()) as Answer;
    const heat = Buffer.from(r.heatmapPng!, 'base64');
    expect(heat.subarray(1, 4).toString()).toBe('PNG');
    const img = await decodeRgb(heat, 1e6);
    expect([img.width, img.height]).toEqual([S, S]);
  });

  it('answers bad uploads with 400 or 413 and the reason, and keeps serving', async () => {
    const cases: [string, Body, string, number, RegExp][] = [
      ['empty body', new Uint8Array(0), 'application/octet-stream', 400, /empty body/],
      ['a text file', 'hello, this is not an image\n', 'text/plain', 400, /not a readable image/],
      ['a JSON body', '{"image": "x"}', 'application/json', 400, /not a readable image/],
      ['a 20000x20000 PNG header', pngHeader(20000, 20000), 'image/png', 413, /20000x20000 .*limit is 4000000 pixels/],
      ['a truncated PNG', png.subarray(0, png.length - 30), 'image/png', 400, /could not be decoded|truncated|not a readable image/],
      ['a body over maxBytes', new Uint8Array(70 * 1024), 'image/png', 413, /too large|smaller image/i],
    ];
    for (const [what, body, type, status, msg] of cases) {
      const r = await post(body, '', type);
      const j = (await r.json()) as Answer;
      expect(r.status, what).toBe(status);
      expect(j.error, what).toMatch(msg);
    }
    const two = new FormData();
    two.append('a', new Blob([png], { type: 'image/png' }), 'a.png');
    two.append('b', new Blob([png], { type: 'image/png' }), 'b.png');
    const twoFiles = await fetch(`${base}/v1/score`, { method: 'POST', body: two });
    expect([twoFiles.status, ((await twoFiles.json()) as Answer).error]).toEqual([400, expect.stringMatching(/more than one file/)]);
    const badFlag = await post(png, '?heatmap=yes');
    expect([badFlag.status, ((await badFlag.json()) as Answer).error]).toEqual([400, expect.stringMatching(/heatmap=yes: use heatmap=1/)]);
    const unknown = await post(png, '?class=../../etc/passwd');
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as Answer).error).toMatch(/unknown class .*knows bottle, grid/);
    expect((await post(png)).status).toBe(200);
  });

  it('a full queue answers 503 with Retry-After; the queued requests are then answered', async () => {
    let open!: () => void;
    m.gate = new Promise((r) => (open = r));
    const before = m.batches.length;
    const first = post(png); // runs (held by the gate)
    const held: Promise<Response>[] = [first];
    while (m.batches.length === before) await new Promise((r) => setTimeout(r, 2));
    held.push(post(png), post(png)); // fill the queue of 2
    while (!(await fetch(`${base}/readyz`)).status.toString().startsWith('5')) await new Promise((r) => setTimeout(r, 2));
    const refused = await post(png);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    m.gate = null;
    open();
    const answers = await Promise.all(held);
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  it('a known path with another method is 405 with Allow; an unknown path 404', async () => {
    const get = await fetch(`${base}/v1/score`);
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    const put = await fetch(`${base}/healthz`, { method: 'POST', body: 'x' });
    expect([put.status, put.headers.get('allow'), ((await put.json()) as Answer).error]).toEqual([405, 'GET, HEAD', 'POST /healthz: use GET, HEAD']);
    expect((await fetch(`${base}/v2/score`, { method: 'POST', body: png })).status).toBe(404);
  });

  it('/healthz, /readyz and /metrics (requests, latency, queue depth, errors, process memory)', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await (await fetch(`${base}/readyz`)).json();
    expect(ready).toMatchObject({ ready: true, draining: false, queueDepth: 0, model: { kind: 'test' } });
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/diad_serve_requests_total\{route="\/v1\/score",code="200"\} \d+/);
    expect(text).toMatch(/diad_serve_requests_total\{route="\/v1\/score",code="503"\} 1/);
    expect(text).toMatch(/diad_serve_request_duration_seconds_bucket\{le="0.1",route="\/v1\/score"\}/);
    expect(text).toMatch(/diad_serve_queue_depth 0/);
    expect(text).toMatch(/diad_serve_errors_total\{reason="too_large"\} 2/);
    expect(text).toMatch(/diad_serve_process_resident_memory_bytes \d+/);
  });

  it('graceful shutdown finishes the request in flight, then refuses new work', async () => {
    let open!: () => void;
    m.gate = new Promise((r) => (open = r));
    const before = m.batches.length;
    const inflight = post(png);
    while (m.batches.length === before) await new Promise((r) => setTimeout(r, 2));
    const done = server.shutdown();
    await new Promise((r) => setTimeout(r, 20));
    open();
    const r = await inflight;
    expect(r.status).toBe(200);
    await done;
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});
