/**
 * appendBackward: the gradient rules of every node type the recorder emits, checked against
 * tfjs's own gradients (cpu backend, `tf.variableGrads` through TfjsOps) on small random inputs:
 * the shared `net` uses every `Ops` method; `edges` adds the conv and pooling shapes the net lacks
 * (stride 2 with symmetric padding, a pooling window larger than its stride).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import type * as tf from '@tensorflow/tfjs-core';
import type { Ops } from '../src/ops.js';
import { Rng } from '../src/random.js';
import { tensor, type HostTensor } from '../src/tensor.js';
import { initTfjs } from '../src/tfjs/engine.js';
import { ParamStore } from '../src/tfjs/params.js';
import { TfjsOps } from '../src/tfjs/ops.js';
import { appendBackward, OnnxRecorderOps, type Sym } from '../src/onnx/index.js';
import { inputs, net, relErr, specs } from './net.js';

const N = 2;
const rnd = (shape: number[], seed: number) => tensor(new Rng(seed).normals(shape.reduce((a, b) => a * b, 1)), shape, shape.length === 4 ? 'NCHW' : 'any');
const weights = { y: rnd([N, 4, 8, 8], 1), tok: rnd([N, 4, 4, 4], 2) };

/** A scalar loss over every output of `net`, using the loss-side Ops (sum, mean, abs, addScalar). */
function netLoss<T>(ops: Ops<T>, img: T, ctx: T, vec: T): T {
  const { y, pooled, e } = net(ops, img, ctx, vec);
  const a = ops.sum(ops.mul(y, ops.input(weights.y)));
  const b = ops.mean(ops.abs(ops.sub(pooled, ops.input(weights.tok))));
  return ops.addScalar(ops.add(ops.add(a, b), ops.scale(ops.sum(e), 0.3)), 1);
}

/** Stride-2 conv with padding 1 (weight-gradient crop), 3x3 pooling at stride 2 on 9x9 (uncovered border). */
function edgesLoss<T>(ops: Ops<T>, img: T): T {
  const h = ops.conv2d(img, 'conv_in.weight', 'conv_in.bias', { stride: 2, padding: 1 }); // [N, C, 5, 5]
  const p = ops.avgPool2d(ops.conv2d(img, 'conv_in.weight', null, { padding: 1 }), 3, 2); // [N, C, 4, 4]
  return ops.add(ops.sum(ops.mul(h, h)), ops.sum(ops.mul(p, ops.exp(p))));
}

describe('appendBackward gradient rules', () => {
  let store: ParamStore;
  let params: Record<string, HostTensor>;
  beforeAll(async () => {
    await initTfjs({ engine: 'cpu' });
    store = ParamStore.create(specs, 11);
    params = await store.toHost();
  });

  /** tfjs's loss and gradients (official layout) for every parameter. */
  async function tfjsGrads(loss: (ops: TfjsOps) => tf.Tensor): Promise<{ value: number; grads: Record<string, Float32Array> }> {
    const ops = new TfjsOps(store);
    const { loss: value, grads } = await store.gradients(
      () => true,
      () => loss(ops) as tf.Scalar,
    );
    return { value, grads };
  }

  /** The training graph's loss and gradients through onnxruntime. */
  async function ortGrads(build: (rec: OnnxRecorderOps) => { loss: Sym; feeds: Record<string, HostTensor> }) {
    const rec = new OnnxRecorderOps(params, { paramInputs: true });
    const { loss, feeds } = build(rec);
    const { grads } = appendBackward(rec, loss, rec.paramInputNames);
    const outputs: Record<string, Sym> = { loss };
    for (const [n, g] of Object.entries(grads)) if (g) outputs[`grad.${n}`] = g;
    const session = await ort.InferenceSession.create(rec.toModel(outputs));
    const all: Record<string, ort.Tensor> = {};
    for (const [n, t] of Object.entries({ ...feeds, ...Object.fromEntries(rec.paramInputNames.map((p) => [p, params[p]])) })) {
      all[n] = new ort.Tensor('float32', t.data as Float32Array, [...t.shape]);
    }
    const res = await session.run(all);
    await session.release();
    return { value: (res.loss.data as Float32Array)[0], grads, res };
  }

  it('gives tfjs gradients for every parameter of a net using every Ops method (relative error < 1e-4)', async () => {
    const x = inputs(N, 3);
    const want = await tfjsGrads((ops) => netLoss(ops, ops.input(x.img), ops.input(x.ctx), ops.input(x.vec)));
    const got = await ortGrads((rec) => ({
      loss: netLoss(rec, rec.graphInput('image', x.img.shape, false), rec.graphInput('context', x.ctx.shape, false), rec.graphInput('vec', x.vec.shape, false)),
      feeds: { image: x.img, context: x.ctx, vec: x.vec },
    }));
    expect(Math.abs(got.value - want.value) / Math.abs(want.value)).toBeLessThan(1e-5);
    const errors: Record<string, number> = {};
    for (const name of Object.keys(params)) {
      const g = got.res[`grad.${name}`];
      expect(g, name).toBeDefined();
      errors[name] = relErr(g.data as Float32Array, want.grads[name]);
      expect(errors[name], name).toBeLessThan(1e-4);
    }
    console.log(`[onnx-grad] relative errors vs tfjs(cpu) ${JSON.stringify(errors)}`);
  });

  it('handles strided convs with a cropped weight gradient and overlapping pools', async () => {
    const img = rnd([N, 3, 9, 9], 4);
    const want = await tfjsGrads((ops) => edgesLoss(ops, ops.input(img)));
    const got = await ortGrads((rec) => ({ loss: edgesLoss(rec, rec.graphInput('image', [N, 3, 9, 9], false)), feeds: { image: img } }));
    expect(Math.abs(got.value - want.value) / Math.abs(want.value)).toBeLessThan(1e-5);
    for (const name of ['conv_in.weight', 'conv_in.bias'])
      expect(relErr(got.res[`grad.${name}`].data as Float32Array, want.grads[name]), name).toBeLessThan(1e-4);
  });

  it('reports parameters the loss does not reach as null, like torch leaves their grad None', () => {
    const rec = new OnnxRecorderOps(params, { paramInputs: true });
    const x = rec.graphInput('x', [1, 3, 8, 8], false);
    const used = rec.conv2d(x, 'conv_in.weight', 'conv_in.bias', { padding: 1 });
    rec.conv2d(x, 'conv_in.weight', null); // recorded but not part of the loss
    rec.linear(rec.graphInput('v', [1, 6], false), 'emb.weight', 'emb.bias'); // dead branch
    const { grads } = appendBackward(rec, rec.mean(used), rec.paramInputNames);
    expect(grads['conv_in.weight']?.shape).toEqual([16, 3, 3, 3]);
    expect(grads['emb.weight']).toBeNull();
    expect(grads['emb.bias']).toBeNull();
  });

  it('refuses dynamic batches, non-scalar losses and ops without a rule', () => {
    const dyn = new OnnxRecorderOps(params, { paramInputs: true });
    const y = dyn.conv2d(dyn.graphInput('x', [1, 3, 8, 8]), 'conv_in.weight', null);
    expect(() => appendBackward(dyn, dyn.mean(y), dyn.paramInputNames)).toThrow(/batched=false/);
    const rec = new OnnxRecorderOps(params, { paramInputs: true });
    const z = rec.conv2d(rec.graphInput('x', [1, 3, 8, 8], false), 'conv_in.weight', null);
    expect(() => appendBackward(rec, z, rec.paramInputNames)).toThrow(/must be a scalar/);
    const odd = rec.custom('Cos', [z], z.shape);
    expect(() => appendBackward(rec, rec.mean(odd), rec.paramInputNames)).toThrow(/no gradient rule for Cos/);
  });
});
