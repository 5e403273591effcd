import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initTfjs } from '../src/tfjs/engine.js';
import { AdamW, Trainer } from '../src/tfjs/train.js';
import { readSafetensors, writeSafetensors } from '../src/safetensors.js';
import { readOptimizerState, trainingCheckpoint } from '../src/checkpoint.js';
import { tensor } from '../src/tensor.js';

beforeAll(async () => {
  await initTfjs({ engine: 'cpu' });
});

/**
 * torch.optim.AdamW (torch/optim/adamw.py, single-tensor), in float64:
 *   p = p * (1 - lr * wd)
 *   m = b1 * m + (1 - b1) * g ;  v = b2 * v + (1 - b2) * g^2
 *   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 */
function torchAdamW(p0: number[], gradOf: (p: number[], t: number) => number[], lrs: number[], wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8) {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  lrs.forEach((lr, i) => {
    const t = i + 1;
    const g = gradOf(p, t);
    for (let j = 0; j < p.length; j++) {
      p[j] *= 1 - lr * wd;
      m[j] = b1 * m[j] + (1 - b1) * g[j];
      v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
      p[j] -= (lr / (1 - b1 ** t)) * (m[j] / (Math.sqrt(v[j]) / Math.sqrt(1 - b2 ** t) + eps));
    }
  });
  return { p, m, v };
}

const close = (a: ArrayLike<number>, b: number[], tol = 2e-6) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < b.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b[i])));
};

const P0 = [0.5, -1.0, 2.0];
const C = [0.3, -2.0, 1.5];
// loss = sum(c * p) + 0.5 * sum(p^2)  ->  grad = c + p
const quadLoss = (w: tf.Variable) => () => tf.add(tf.sum(tf.mul(tf.tensor1d(C), w)), tf.mul(0.5, tf.sum(tf.square(w)))) as tf.Scalar;
const quadGrad = (p: number[]) => p.map((x, i) => C[i] + x);

describe('AdamW', () => {
  it('matches the PyTorch formula for 3 steps', async () => {
    const w = tf.variable(tf.tensor1d(P0));
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1 } });
    for (let i = 0; i < 3; i++) await tr.trainStep([quadLoss(w)]);
    const ref = torchAdamW(P0, quadGrad, [0.1, 0.1, 0.1]);
    close(w.dataSync(), ref.p);
    const st = tr.optimizer.stateTensors();
    close(st['exp_avg.w'].dataSync(), ref.m);
    close(st['exp_avg_sq.w'].dataSync(), ref.v);
    expect(tr.step).toBe(3);
  });

  it('warms the learning rate up linearly', async () => {
    const w = tf.variable(tf.tensor1d(P0));
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1, warmupSteps: 2, weightDecay: 0.05 } });
    const lrs: number[] = [];
    for (let i = 0; i < 3; i++) lrs.push((await tr.trainStep([quadLoss(w)])).lr);
    expect(lrs).toEqual([0.05, 0.1, 0.1]);
    close(w.dataSync(), torchAdamW(P0, quadGrad, lrs, 0.05).p);
  });

  it('anneals the learning rate on a cosine over decaySteps (CosineAnnealingLR, eta_min 0), after the warm-up', async () => {
    const w = tf.variable(tf.tensor1d(P0));
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1, decaySteps: 4 } });
    const lrs: number[] = [];
    for (let i = 0; i < 5; i++) lrs.push((await tr.trainStep([quadLoss(w)])).lr);
    // torch: lr_t = 0.1 * (1 + cos(pi * (t - 1) / 4)) / 2 for t = 1..4, held at 0 after T_max.
    const want = [0.1, 0.0853553390593, 0.05, 0.0146446609407, 0];
    for (let i = 0; i < want.length; i++) expect(lrs[i]).toBeCloseTo(want[i], 12);
    close(w.dataSync(), torchAdamW(P0, quadGrad, want).p);
    const both = new AdamW({ lr: 0.1, warmupSteps: 2, decaySteps: 3 });
    expect([1, 2, 3].map((t) => both.lrAt(t))).toEqual([0.05 * 1, 0.1 * 0.75, 0.1 * 0.25].map((x) => expect.closeTo(x, 12)));
  });

  it('validates its hyper-parameters', () => {
    expect(() => new AdamW({ lr: 1, decaySteps: 1.5 })).toThrow('AdamW: decaySteps must be an integer >= 0, got 1.5');
    expect(() => new AdamW({ lr: 0 })).toThrow('AdamW: learning rate must be > 0, got 0');
    expect(() => new AdamW({ lr: 1, betas: [0.9, 1] })).toThrow(/betas must be in \[0, 1\)/);
  });
});

describe('Trainer', () => {
  it('leaves frozen variables bit-identical and changes the trainable ones, without leaking tensors', async () => {
    const w = tf.variable(tf.tensor1d([0.1, 0.2, 0.3]));
    const frozen = tf.variable(tf.tensor1d([1.1, -2.3, 0.7]));
    const before = new Uint32Array(new Float32Array(frozen.dataSync()).buffer).slice();
    const wBefore = Array.from(w.dataSync());
    const tr = new Trainer({ w }, { optimizer: { lr: 0.01 } });
    const loss = () => tf.sum(tf.square(tf.mul(w, frozen))) as tf.Scalar;
    await tr.trainStep([loss]);
    const n = tf.memory().numTensors;
    await tr.trainStep([loss, loss]);
    expect(tf.memory().numTensors).toBe(n);
    expect(new Uint32Array(new Float32Array(frozen.dataSync()).buffer)).toEqual(before);
    expect(Array.from(w.dataSync()).every((x, i) => x !== wBefore[i])).toBe(true);
  });

  it('accumulating 2 micro-batches equals one batch of 2 for a linear loss', async () => {
    const X = [
      [1, 2, 3],
      [-4, 0.5, 2],
    ];
    const mean = (rows: number[][], w: tf.Variable) => () => tf.mean(tf.matMul(tf.tensor2d(rows), tf.reshape(w, [3, 1]))) as tf.Scalar;
    const a = tf.variable(tf.tensor1d(P0));
    const b = tf.variable(tf.tensor1d(P0));
    const ta = new Trainer({ w: a }, { optimizer: { lr: 0.1 } });
    const tb = new Trainer({ w: b }, { optimizer: { lr: 0.1 } });
    for (let i = 0; i < 2; i++) {
      const ra = await ta.trainStep([mean([X[0]], a), mean([X[1]], a)]);
      const rb = await tb.trainStep([mean(X, b)]);
      expect(ra.loss).toBeCloseTo(rb.loss, 6);
      expect(ra.gradNorm).toBeCloseTo(rb.gradNorm, 6);
    }
    close(a.dataSync(), Array.from(b.dataSync()), 1e-7);
    // And both equal the formula with the batch-mean gradient (constant for a linear loss).
    const g = [0, 1, 2].map((j) => (X[0][j] + X[1][j]) / 2);
    close(a.dataSync(), torchAdamW(P0, () => g, [0.1, 0.1]).p);
  });

  it('clips to the global gradient norm like clip_grad_norm_', async () => {
    const c1 = [3, 4];
    const c2 = [0.3, -0.4];
    const w = tf.variable(tf.tensor1d([1, 1]));
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1 }, clipGradNorm: 1 });
    const lin = (c: number[]) => () => tf.sum(tf.mul(tf.tensor1d(c), w)) as tf.Scalar;
    const r1 = await tr.trainStep([lin(c1)]);
    const r2 = await tr.trainStep([lin(c2)]);
    expect(r1.gradNorm).toBeCloseTo(5, 5);
    expect(r1.clipped).toBe(true);
    expect(r2.clipped).toBe(false);
    const grads = [c1.map((x) => x / (5 + 1e-6)), c2];
    close(w.dataSync(), torchAdamW([1, 1], (_p, t) => grads[t - 1], [0.1, 0.1]).p);
    const unclipped = torchAdamW([1, 1], (_p, t) => [c1, c2][t - 1], [0.1, 0.1]).p;
    expect(Math.abs(w.dataSync()[0] - unclipped[0])).toBeGreaterThan(1e-3);
  });

  it('stops on a NaN loss or an infinite gradient, naming the step, and changes nothing', async () => {
    const w = tf.variable(tf.tensor1d([0, 1]));
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1 } });
    await tr.trainStep([() => tf.sum(w) as tf.Scalar]);
    const after1 = Array.from(w.dataSync());
    const nan = () => tf.mul(tf.sum(w), NaN) as tf.Scalar;
    await expect(tr.trainStep([() => tf.sum(w) as tf.Scalar, nan])).rejects.toThrow(
      /^non-finite loss NaN at step 2 \(micro-batch 2 of 2\); parameters not updated/,
    );
    const z = tf.variable(tf.tensor1d([0, 1]));
    const tz = new Trainer({ z }, { optimizer: { lr: 0.1 } });
    await expect(tz.trainStep([() => tf.sum(tf.sqrt(z)) as tf.Scalar])).rejects.toThrow(/^non-finite gradient norm Infinity at step 1 \(loss 1\)/);
    expect(Array.from(w.dataSync())).toEqual(after1);
    expect(tr.step).toBe(1);
    expect(Array.from(z.dataSync())).toEqual([0, 1]);
  });
});

describe('training checkpoints (one format on every engine)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-train-'));
  const make = (seed: number): Record<string, tf.Variable> => ({
    'model.w': tf.variable(tf.randomNormal([3, 2], 0, 1, 'float32', seed)),
    'model.b': tf.variable(tf.randomNormal([2], 0, 1, 'float32', seed + 1)),
  });
  const lossOf = (v: Record<string, tf.Variable>) => () =>
    tf.sum(tf.square(tf.add(tf.matMul(tf.tensor2d([[1, 2, 3]]), v['model.w']), v['model.b']))) as tf.Scalar;
  const host = (t: tf.Tensor) => tensor(t.dataSync() as Float32Array, t.shape);

  it('round-trips parameters, optimizer state and step; training continues identically', async () => {
    const a = make(1);
    const ta = new Trainer(a, { optimizer: { lr: 0.1 } });
    for (let i = 0; i < 2; i++) await ta.trainStep([lossOf(a)]);
    const path = join(dir, 'ckpt.safetensors');
    const state = Object.fromEntries(Object.entries(ta.optimizer.stateTensors()).map(([n, t]) => [n, host(t)]));
    await writeSafetensors(path, trainingCheckpoint(Object.fromEntries(Object.entries(a).map(([n, v]) => [n, host(v)])), state, ta.step));

    const file = await readSafetensors(path);
    expect(file.names().sort()).toEqual([
      'model.b',
      'model.w',
      'optimizer.exp_avg.model.b',
      'optimizer.exp_avg.model.w',
      'optimizer.exp_avg_sq.model.b',
      'optimizer.exp_avg_sq.model.w',
      'optimizer.step',
    ]);
    const back = readOptimizerState(file);
    expect(back.step).toBe(2);

    const b = make(7);
    for (const [n, v] of Object.entries(b)) v.assign(tf.tensor(file.float32(n).data, [...file.float32(n).shape]));
    const tb = new Trainer(b, { optimizer: { lr: 0.1 } });
    tb.optimizer.loadState(back.step, back.state, b);
    expect(tb.step).toBe(2);
    const ra = await ta.trainStep([lossOf(a)]);
    const rb = await tb.trainStep([lossOf(b)]);
    expect(rb).toEqual(ra);
    for (const n of Object.keys(a)) expect(Array.from(b[n].dataSync())).toEqual(Array.from(a[n].dataSync()));
  });

  it('a plain weights file is refused as a training checkpoint, naming it', async () => {
    const path = join(dir, 'weights.safetensors');
    await writeSafetensors(path, { 'model.b': tensor(new Float32Array(2), [2]) });
    const file = await readSafetensors(path);
    expect(() => readOptimizerState(file)).toThrow(/not a training checkpoint \(no optimizer\.step\); it holds weights only/);
  });
});

describe('on wasm', () => {
  it('trains a conv through the gradient override', async () => {
    await initTfjs({ engine: 'wasm' });
    const f = tf.variable(tf.randomNormal([3, 3, 2, 4], 0, 0.5, 'float32', 5));
    const x = tf.randomNormal([2, 8, 8, 2], 0, 1, 'float32', 6) as tf.Tensor4D;
    const target = tf.randomNormal([2, 4, 4, 4], 0, 1, 'float32', 7);
    const loss = () =>
      tf.mean(
        tf.square(
          tf.sub(
            tf.conv2d(x, f as tf.Tensor4D, 2, [
              [0, 0],
              [0, 1],
              [0, 1],
              [0, 0],
            ]),
            target,
          ),
        ),
      ) as tf.Scalar;
    const tr = new Trainer({ f }, { optimizer: { lr: 0.05 } });
    const losses: number[] = [];
    for (let i = 0; i < 5; i++) losses.push((await tr.trainStep([loss])).loss);
    expect(losses[4]).toBeLessThan(losses[0] * 0.9);
    await initTfjs({ engine: 'cpu' });
  });
});
