import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initTfjs } from '../src/tfjs/engine.js';
import { AdamW, configHash, optimizerPath, Trainer } from '../src/tfjs/train.js';
import { readSafetensors } from '../src/safetensors.js';
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
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1 }, config: {} });
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
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1, warmupSteps: 2, weightDecay: 0.05 }, config: {} });
    const lrs: number[] = [];
    for (let i = 0; i < 3; i++) lrs.push((await tr.trainStep([quadLoss(w)])).lr);
    expect(lrs).toEqual([0.05, 0.1, 0.1]);
    close(w.dataSync(), torchAdamW(P0, quadGrad, lrs, 0.05).p);
  });

  it('validates its hyper-parameters', () => {
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
    const tr = new Trainer({ w }, { optimizer: { lr: 0.01 }, config: {} });
    const loss = () => tf.sum(tf.square(tf.mul(w, frozen))) as tf.Scalar;
    await tr.trainStep([loss]);
    const n = tf.memory().numTensors;
    await tr.trainStep([loss, loss]);
    expect(tf.memory().numTensors).toBe(n);
    expect(new Uint32Array(new Float32Array(frozen.dataSync()).buffer)).toEqual(before);
    expect(Array.from(w.dataSync()).every((x, i) => x !== wBefore[i])).toBe(true);
  });

  it('accumulating 2 micro-batches equals one batch of 2 for a linear loss', async () => {
    const X = [[1, 2, 3], [-4, 0.5, 2]];
    const mean = (rows: number[][], w: tf.Variable) => () => tf.mean(tf.matMul(tf.tensor2d(rows), tf.reshape(w, [3, 1]))) as tf.Scalar;
    const a = tf.variable(tf.tensor1d(P0));
    const b = tf.variable(tf.tensor1d(P0));
    const ta = new Trainer({ w: a }, { optimizer: { lr: 0.1 }, config: {} });
    const tb = new Trainer({ w: b }, { optimizer: { lr: 0.1 }, config: {} });
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
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1 }, clipGradNorm: 1, config: {} });
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
    const tr = new Trainer({ w }, { optimizer: { lr: 0.1 }, config: {} });
    await tr.trainStep([() => tf.sum(w) as tf.Scalar]);
    const after1 = Array.from(w.dataSync());
    const nan = () => tf.mul(tf.sum(w), NaN) as tf.Scalar;
    await expect(tr.trainStep([() => tf.sum(w) as tf.Scalar, nan])).rejects.toThrow(
      /^non-finite loss NaN at step 2 \(micro-batch 2 of 2\); parameters not updated/,
    );
    const z = tf.variable(tf.tensor1d([0, 1]));
    const tz = new Trainer({ z }, { optimizer: { lr: 0.1 }, config: {} });
    await expect(tz.trainStep([() => tf.sum(tf.sqrt(z)) as tf.Scalar])).rejects.toThrow(/^non-finite gradient norm Infinity at step 1 \(loss 1\)/);
    expect(Array.from(w.dataSync())).toEqual(after1);
    expect(tr.step).toBe(1);
    expect(Array.from(z.dataSync())).toEqual([0, 1]);
  });
});

describe('checkpoints', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-train-'));
  const config = { model: 'tiny', lr: 0.1, data: ['bottle'] };
  // Engine layout [in, out]; the file holds the official [out, in] (a transpose), as a ParamStore would.
  const exportParam = (_n: string, t: tf.Tensor) => {
    const x = tf.transpose(t);
    const h = tensor(x.dataSync() as Float32Array, x.shape);
    x.dispose();
    return h;
  };
  const importParam = (_n: string, h: { data: Float32Array; shape: readonly number[] }) => tf.transpose(tf.tensor(h.data, [...h.shape]));
  const make = (seed: number): Record<string, tf.Variable> => ({
    'model.w': tf.variable(tf.randomNormal([3, 2], 0, 1, 'float32', seed)),
    'model.b': tf.variable(tf.randomNormal([2], 0, 1, 'float32', seed + 1)),
  });
  const lossOf = (v: Record<string, tf.Variable>) => () =>
    tf.sum(tf.square(tf.add(tf.matMul(tf.tensor2d([[1, 2, 3]]), v['model.w']), v['model.b']))) as tf.Scalar;

  it('round-trips parameters, optimizer state and step; training continues identically', async () => {
    const a = make(1);
    const ta = new Trainer(a, { optimizer: { lr: 0.1 }, config });
    for (let i = 0; i < 2; i++) await ta.trainStep([lossOf(a)]);
    const path = join(dir, 'ckpt.safetensors');
    await ta.save(path, { exportParam });

    const file = await readSafetensors(path);
    expect(file.names().sort()).toEqual(['model.b', 'model.w']);
    expect(file.entry('model.w').shape).toEqual([2, 3]);
    expect(file.metadata.step).toBe('2');
    expect(file.metadata.config_hash).toBe(configHash({ data: ['bottle'], lr: 0.1, model: 'tiny' }));
    expect((await readSafetensors(optimizerPath(path))).names().sort()).toEqual(['exp_avg.model.b', 'exp_avg.model.w', 'exp_avg_sq.model.b', 'exp_avg_sq.model.w']);

    const b = make(7);
    const tb = new Trainer(b, { optimizer: { lr: 0.1 }, config: { ...config } });
    await tb.resume(path, { importParam });
    expect(tb.step).toBe(2);
    for (const n of Object.keys(a)) expect(Array.from(b[n].dataSync())).toEqual(Array.from(a[n].dataSync()));
    const ra = await ta.trainStep([lossOf(a)]);
    const rb = await tb.trainStep([lossOf(b)]);
    expect(rb).toEqual(ra);
    for (const n of Object.keys(a)) expect(Array.from(b[n].dataSync())).toEqual(Array.from(a[n].dataSync()));
  });

  it('refuses another config, an interrupted save and missing parameters', async () => {
    const a = make(1);
    const ta = new Trainer(a, { optimizer: { lr: 0.1 }, config });
    const path = join(dir, 'c2.safetensors');
    await ta.trainStep([lossOf(a)]);
    await ta.save(path);
    copyFileSync(optimizerPath(path), join(dir, 'step1.optim'));
    await ta.trainStep([lossOf(a)]);

    const other = new Trainer(make(3), { optimizer: { lr: 0.1 }, config: { ...config, lr: 0.2 } });
    await expect(other.resume(path)).rejects.toThrow(
      new RegExp(`^refusing to resume from ${path}: it was written with config hash ${configHash(config)}, this run's config hashes to ${other.configHash} \\(differing keys: lr\\)`),
    );

    await ta.save(path);
    copyFileSync(join(dir, 'step1.optim'), optimizerPath(path));
    const same = new Trainer(make(3), { optimizer: { lr: 0.1 }, config });
    await expect(same.resume(path)).rejects.toThrow(`${path} is at step 2 but ${optimizerPath(path)} at step 1: the save was interrupted`);

    await ta.save(path);
    const extra = { ...make(3), 'model.c': tf.variable(tf.zeros([1])) };
    await expect(new Trainer(extra, { optimizer: { lr: 0.1 }, config }).resume(path)).rejects.toThrow(`${path} lacks parameters: model.c`);
  });
});

describe('on wasm', () => {
  it('trains a conv through the gradient override', async () => {
    await initTfjs({ engine: 'wasm' });
    const f = tf.variable(tf.randomNormal([3, 3, 2, 4], 0, 0.5, 'float32', 5));
    const x = tf.randomNormal([2, 8, 8, 2], 0, 1, 'float32', 6) as tf.Tensor4D;
    const target = tf.randomNormal([2, 4, 4, 4], 0, 1, 'float32', 7);
    const loss = () => tf.mean(tf.square(tf.sub(tf.conv2d(x, f as tf.Tensor4D, 2, [[0, 0], [0, 1], [0, 1], [0, 0]]), target))) as tf.Scalar;
    const tr = new Trainer({ f }, { optimizer: { lr: 0.05 }, config: {} });
    const losses: number[] = [];
    for (let i = 0; i < 5; i++) losses.push((await tr.trainStep([loss])).loss);
    expect(losses[4]).toBeLessThan(losses[0] * 0.9);
    await initTfjs({ engine: 'cpu' });
  });
});
