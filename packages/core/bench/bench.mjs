// Conv2D throughput on the tfjs engine chosen by initTfjs (wasm here; DIAD_TFJS_ENGINE to override):
// forward and forward+backward (input and filter gradients, through the wasm Conv2D gradient
// override) GFLOP/s, training counted as 3x the forward FLOPs as in shared/notes/engines.md.
// Prints one JSON line. BENCH_ITERS sets the timed iterations (default 5).
import * as tf from '@tensorflow/tfjs-core';
import { initTfjs } from '../dist/tfjs/index.js';

const iters = Number(process.env.BENCH_ITERS ?? 5);
const info = await initTfjs();

// [name, NHWC input, kernel, Cout, stride, padding]
const blocks = [
  ['conv64', [8, 32, 32, 64], 3, 64, 1, 'same'],
  ['conv128', [8, 16, 16, 128], 3, 128, 1, 'same'],
  [
    'down128',
    [8, 32, 32, 128],
    3,
    128,
    2,
    [
      [0, 0],
      [0, 1],
      [0, 1],
      [0, 0],
    ],
  ],
  ['skip1x1', [8, 16, 16, 256], 1, 128, 1, 'valid'],
];

async function time(fn) {
  for (let i = 0; i < 2; i++) await fn();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await fn();
  return (performance.now() - t0) / 1000 / iters;
}

const results = {};
for (const [name, shape, k, cout, stride, pad] of blocks) {
  const x = tf.randomNormal(shape, 0, 1, 'float32', 1);
  const f = tf.randomNormal([k, k, shape[3], cout], 0, 0.1, 'float32', 2);
  const y = tf.conv2d(x, f, stride, pad);
  const flops = 2 * y.size * k * k * shape[3];
  y.dispose();
  const fwd = await time(async () => {
    const out = tf.conv2d(x, f, stride, pad);
    await out.data();
    out.dispose();
  });
  const grads = tf.grads((a, b) => tf.sum(tf.conv2d(a, b, stride, pad)));
  const train = await time(async () => {
    const [gx, gf] = grads([x, f]);
    await Promise.all([gx.data(), gf.data()]);
    gx.dispose();
    gf.dispose();
  });
  results[name] = {
    input: shape,
    kernel: k,
    cout,
    stride,
    fwd_ms: +(fwd * 1e3).toFixed(1),
    train_ms: +(train * 1e3).toFixed(1),
    fwd_gflops: +(flops / fwd / 1e9).toFixed(1),
    train_gflops: +((3 * flops) / train / 1e9).toFixed(1),
  };
  x.dispose();
  f.dispose();
}
console.log(
  JSON.stringify({
    engine: info.engine,
    backend: info.backend,
    threads: info.threads,
    simd: info.simd,
    conv2dGradOverride: info.conv2dGradOverride,
    iters,
    results,
  }),
);
