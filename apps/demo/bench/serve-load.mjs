// Bounded load test of `diad serve` on 127.0.0.1 (autocannon): starts the server on a bundle, sends a
// fixed number of requests at a fixed concurrency, then an overload burst and bad uploads, and stops.
// Reports p50/p99 latency, images/s, status codes, 503s, and the server's resident memory over the run.
//
//   node bench/serve-load.mjs --bundle DIR --images DIR [--requests 200] [--concurrency 8]
//        [--max-batch 8] [--max-queue 16] [--burst 128] [--json OUT.json]
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';
import autocannon from 'autocannon';

const { values: a } = parseArgs({
  options: {
    bundle: { type: 'string' },
    images: { type: 'string' },
    requests: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '8' },
    'max-batch': { type: 'string', default: '8' },
    'max-queue': { type: 'string', default: '16' },
    burst: { type: 'string', default: '128' },
    json: { type: 'string' },
  },
});
if (!a.bundle || !a.images) {
  process.stderr.write('usage: node bench/serve-load.mjs --bundle DIR --images DIR [--requests N] [--concurrency C] [--json OUT]\n');
  process.exit(2);
}
const N = Number(a.requests);
const C = Number(a.concurrency);
const maxQueue = Number(a['max-queue']);
const maxBatch = Number(a['max-batch']);
const log = (l) => process.stderr.write(`${l}\n`);

/** Up to 8 PNG/JPEG files found under `dir`. */
function findImages(dir, out = []) {
  for (const name of readdirSync(dir).sort()) {
    if (out.length >= 8) break;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findImages(p, out);
    else if (/\.(png|jpe?g)$/i.test(name)) out.push(p);
  }
  return out;
}
const images = findImages(a.images).map((p) => readFileSync(p));
if (images.length === 0) throw new Error(`${a.images}: no PNG or JPEG files`);

const cli = new URL('../dist/cli.js', import.meta.url).pathname;
const server = spawn(process.execPath, [cli, 'serve', '--bundle', a.bundle, '--port', '0', '--max-batch', String(maxBatch), '--max-queue', String(maxQueue)], {
  stdio: ['ignore', 'inherit', 'pipe'],
});
let stderr = '';
server.stderr.on('data', (d) => {
  stderr += d;
});
let crashed = false;
server.on('exit', (code, signal) => {
  if (!stopping) crashed = `exit ${code} ${signal ?? ''}`;
});
let stopping = false;
while (!/listening on (\S+) /.test(stderr)) {
  if (server.exitCode !== null) throw new Error(`diad serve exited:\n${stderr}`);
  await new Promise((r) => setTimeout(r, 50));
}
const base = /listening on (\S+) /.exec(stderr)[1];
log(`load: server at ${base} (pid ${server.pid}), ${images.length} distinct images`);

const rssMb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))[1]) / 1024;
const requests = images.map((body) => ({ method: 'POST', path: '/v1/score', headers: { 'content-type': 'image/png' }, body }));
const run = (amount, connections) => autocannon({ url: base, connections, amount, requests, timeout: 300 });
const codes = (r) => Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, v.count]));

// Warm-up: sessions, allocator, one batch of each size.
await run(2 * maxBatch, maxBatch);
const rss0 = rssMb();
const samples = [];
const sampler = setInterval(() => samples.push(rssMb()), 250);
const t0 = performance.now();
const main = await run(N, C);
const seconds = (performance.now() - t0) / 1000;
clearInterval(sampler);
const rss1 = rssMb();

// Overload: more concurrent requests than the queue holds: the surplus gets 503 + Retry-After, nothing crashes.
const burst = await run(Number(a.burst), Number(a.burst));

// Bad uploads, each sent while good requests run.
const png = images[0];
const ihdr = Buffer.alloc(13);
ihdr.writeUInt32BE(20000, 0);
ihdr.writeUInt32BE(20000, 4);
ihdr.set([8, 2, 0, 0, 0], 8);
const crc = Buffer.alloc(4);
crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from('IHDR'), ihdr])));
const bomb = Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13]), Buffer.from('IHDR'), ihdr, crc]);
const bad = {
  'empty body': [Buffer.alloc(0), 'application/octet-stream'],
  'text file': [Buffer.from('this is a text file, not an image\n'), 'text/plain'],
  '20000x20000 PNG header': [bomb, 'image/png'],
  'truncated PNG': [png.subarray(0, Math.floor(png.length / 2)), 'image/png'],
};
const post = (body, type) =>
  fetch(`${base}/v1/score`, { method: 'POST', body, headers: { 'content-type': type } }).then(async (r) => ({ status: r.status, body: await r.json() }));
const goods = Array.from({ length: 8 }, () => post(png, 'image/png'));
const badResults = Object.fromEntries(await Promise.all(Object.entries(bad).map(async ([k, [b, t]]) => [k, await post(b, t)])));
const goodStatus = (await Promise.all(goods)).map((r) => r.status);
const alive = (await fetch(`${base}/healthz`)).status;
// The server's own count: every 503 it sent and why (queue_full is the only reason before shutdown).
const metricsText = await (await fetch(`${base}/metrics`)).text();
const serverErrors = Object.fromEntries([...metricsText.matchAll(/^diad_serve_errors_total\{reason="(\w+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]));

stopping = true;
server.kill('SIGTERM');
const exitCode = await new Promise((ok) => (server.exitCode !== null ? ok(server.exitCode) : server.on('exit', ok)));

/** The largest RSS sample of each quarter of the run: flat memory shows as equal quarters. */
function quarterMaxima(xs) {
  const q = Math.ceil(xs.length / 4);
  return [0, 1, 2, 3].map((i) => Math.round(Math.max(...xs.slice(i * q, (i + 1) * q))));
}

const summary = {
  bundle: a.bundle,
  requests: N,
  concurrency: C,
  maxBatch,
  maxQueue,
  seconds: Number(seconds.toFixed(2)),
  imagesPerSecond: Number((main['2xx'] / seconds).toFixed(2)),
  latencyMs: { p50: main.latency.p50, p90: main.latency.p90, p99: main.latency.p99, max: main.latency.max },
  statusCodes: codes(main),
  errors: main.errors,
  timeouts: main.timeouts,
  rssMb: { afterWarmup: Math.round(rss0), max: Math.round(Math.max(...samples, rss1)), end: Math.round(rss1), quarterMaxima: quarterMaxima(samples) },
  burst: { requests: Number(a.burst), concurrency: Number(a.burst), statusCodes: codes(burst), errors: burst.errors },
  badUploads: Object.fromEntries(Object.entries(badResults).map(([k, r]) => [k, `${r.status} ${r.body.error}`])),
  goodDuringBadUploads: goodStatus,
  aliveAfter: alive,
  serverErrorsByReason: serverErrors,
  crashed,
  exitCode,
};
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
if (a.json) writeFileSync(a.json, `${JSON.stringify(summary, null, 2)}\n`);
