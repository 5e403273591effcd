/**
 * OrtTrainer and HostAdamW: torch's AdamW update by hand, parameters the loss does not reach left
 * untouched, bit-exact resume from saved parameters and optimizer state, the NaN guard, and
 * accumulation over micro-batches.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { HostAdamW } from '../src/adamw.js';
import { Rng } from '../src/random.js';
import { tensor, type HostTensor } from '../src/tensor.js';
import { initTfjs } from '../src/tfjs/engine.js';
import { ParamStore } from '../src/tfjs/params.js';
import { OnnxRecorderOps, trainingGraph, type TrainingGraph } from '../src/onnx/index.js';
import { OrtTrainer } from '../src/ort/index.js';
import { inputs, net, specs } from './net.js';

const N = 2;

describe('HostAdamW', () => {
  it('follows torch.optim.AdamW by hand for two steps, and skips parameters without a gradient', () => {
    const opt = new HostAdamW({ lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.5 });
    const p = { a: Float32Array.from([1, -2]), b: Float32Array.from([3]) };
    opt.apply(p, { a: Float32Array.from([0.5, -4]) });
    // t=1: p *= 1 - 0.05; m = 0.1 g; v = 0.01 g^2; p -= (0.1 / 0.1) m / (sqrt(v) / sqrt(0.01) + eps) = sign(g) * 0.1
    expect(p.a[0]).toBeCloseTo(0.95 - 0.1, 6);
    expect(p.a[1]).toBeCloseTo(-1.9 + 0.1, 6);
    expect(p.b[0]).toBe(3);
    opt.apply(p, { a: Float32Array.from([1, 0]) });
    const m = 0.9 * 0.05 + 0.1 * 1;
    const v = 0.99 * 0.0025 + 0.01 * 1;
    const want = (0.95 - 0.1) * 0.95 - ((0.1 / (1 - 0.81)) * m) / (Math.sqrt(v) / Math.sqrt(1 - 0.99 ** 2) + 1e-8);
    expect(p.a[0]).toBeCloseTo(want, 6);
    expect(opt.step).toBe(2);
    expect(() => opt.apply(p, { c: Float32Array.from([1]) })).toThrow(/no parameter/);
  });
});

describe('OrtTrainer', () => {
  let params: Record<string, HostTensor<'float32'>>;
  let graph: TrainingGraph;
  const x = inputs(N, 9);
  const feeds = { image: x.img, context: x.ctx, vec: x.vec };

  beforeAll(async () => {
    await initTfjs({ engine: 'cpu' });
    params = await ParamStore.create(specs, 3).toHost();
    const rec = new OnnxRecorderOps(params, { paramInputs: true });
    const { y, pooled } = net(
      rec,
      rec.graphInput('image', x.img.shape, false),
      rec.graphInput('context', x.ctx.shape, false),
      rec.graphInput('vec', x.vec.shape, false),
    );
    // `ln.*` is frozen: graph inputs without gradient outputs.
    const loss = rec.add(rec.mean(rec.mul(y, y)), rec.scale(rec.mean(pooled), 0.1));
    graph = trainingGraph(rec, loss, (n) => !n.startsWith('ln.'));
  });

  it('trains only the trainable parameters and lowers the loss', async () => {
    const t = await OrtTrainer.open(graph, params, { optimizer: { lr: 1e-2 } });
    try {
      expect(graph.trainable).not.toContain('ln.weight');
      const first = (await t.trainStep([feeds])).loss;
      let last = first;
      for (let i = 0; i < 10; i++) last = (await t.trainStep([feeds])).loss;
      expect(last).toBeLessThan(first * 0.9);
      expect([...t.params['ln.weight'].data]).toEqual([...params['ln.weight'].data]);
      expect([...t.params['conv_in.weight'].data]).not.toEqual([...params['conv_in.weight'].data]);
      // The caller's values are copies: the trainer never writes into them.
      expect(params['conv_in.weight'].data).not.toBe(t.params['conv_in.weight'].data);
    } finally {
      await t.release();
    }
  });

  it('resumes bit-exactly from saved parameters and optimizer state', async () => {
    const straight = await OrtTrainer.open(graph, params, { optimizer: { lr: 1e-2 } });
    const first = await OrtTrainer.open(graph, params, { optimizer: { lr: 1e-2 } });
    const second = await OrtTrainer.open(graph, params, { optimizer: { lr: 1e-2 } });
    try {
      for (let i = 0; i < 4; i++) await straight.trainStep([feeds]);
      for (let i = 0; i < 2; i++) await first.trainStep([feeds]);
      const saved = Object.fromEntries(Object.entries(first.params).map(([n, t]) => [n, tensor(t.data.slice(), t.shape)]));
      const state = Object.fromEntries(Object.entries(first.optimizerState()).map(([n, t]) => [n, tensor(t.data.slice(), t.shape)]));
      second.restore(first.step, saved, state);
      for (let i = 0; i < 2; i++) await second.trainStep([feeds]);
      expect(second.step).toBe(4);
      for (const n of graph.params) expect([...second.params[n].data], n).toEqual([...straight.params[n].data]);
      expect(() => second.restore(1, { 'conv_in.weight': tensor(new Float32Array(3), [3]) }, {})).toThrow(/conv_in.weight/);
    } finally {
      await Promise.all([straight.release(), first.release(), second.release()]);
    }
  });

  it('refuses a NaN loss without touching the parameters, and averages micro-batches', async () => {
    const t = await OrtTrainer.open(graph, params, { optimizer: { lr: 1e-2 } });
    try {
      const bad = { ...feeds, image: tensor(new Float32Array(x.img.data.length).fill(Number.NaN), x.img.shape, 'NCHW') };
      await expect(t.trainStep([bad])).rejects.toThrow(/non-finite loss NaN at step 1/);
      expect(t.step).toBe(0);
      expect([...t.params['conv_in.weight'].data]).toEqual([...params['conv_in.weight'].data]);
      const other = { ...feeds, image: tensor(new Rng(5).normals(x.img.data.length), x.img.shape, 'NCHW') };
      const a = await t.lossAndGrads(feeds);
      const b = await t.lossAndGrads(other);
      let sq = 0;
      for (const n of graph.trainable) for (let i = 0; i < a.grads[n].length; i++) sq += ((a.grads[n][i] + b.grads[n][i]) / 2) ** 2;
      const r = await t.trainStep([feeds, other]);
      expect(r.step).toBe(1);
      expect(Math.abs(r.loss - (a.loss + b.loss) / 2)).toBeLessThan(1e-6 * Math.abs(r.loss));
      expect(Math.abs(r.gradNorm - Math.sqrt(sq)) / Math.sqrt(sq)).toBeLessThan(1e-5);
    } finally {
      await t.release();
    }
  });

  it('refuses a graph without values for all its parameters', async () => {
    const { 'conv_in.weight': _, ...rest } = params;
    await expect(OrtTrainer.open(graph, rest, { optimizer: { lr: 1e-2 } })).rejects.toThrow(/no value for 1 parameters of the graph \(conv_in.weight\)/);
  });
});
