/**
 * OnnxRecorderOps: a small network using every `Ops` method is recorded to ONNX, run on
 * onnxruntime-node, and compared with TfjsOps (cpu backend, the reference) on the same random
 * weights; also the dynamic batch, shapes and errors.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs-core';
import { tensor, type HostTensor } from '../src/tensor.js';
import { initTfjs } from '../src/tfjs/engine.js';
import { ParamStore } from '../src/tfjs/params.js';
import { TfjsOps } from '../src/tfjs/ops.js';
import { OnnxRecorderOps, type Sym } from '../src/onnx/index.js';
import { C, inputs, net, relErr, specs } from './net.js';

describe('OnnxRecorderOps', () => {
  let store: ParamStore;
  let params: Record<string, HostTensor>;
  beforeAll(async () => {
    await initTfjs({ engine: 'cpu' });
    store = ParamStore.create(specs, 7);
    params = await store.toHost();
  });

  async function record(batch: number): Promise<{ bytes: Uint8Array; rec: OnnxRecorderOps; outs: Record<string, Sym> }> {
    const rec = new OnnxRecorderOps(params, { metadata: { purpose: 'test' } });
    const outs = net(rec, rec.graphInput('image', [batch, 3, 8, 8]), rec.graphInput('context', [batch, 5, 8]), rec.graphInput('vec', [batch, 6]));
    return { bytes: rec.toModel(outs), rec, outs };
  }

  async function tfjsOutputs(x: ReturnType<typeof inputs>): Promise<Record<string, HostTensor>> {
    const ops = new TfjsOps(store);
    const o = tf.tidy(() => net(ops, ops.input(x.img), ops.input(x.ctx), ops.input(x.vec)));
    const out: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(o)) out[k] = await ops.read(v);
    tf.dispose(Object.values(o));
    return out;
  }

  it('records shapes as the model code sees them', async () => {
    const { outs } = await record(2);
    expect(outs.y.shape).toEqual([2, 4, 8, 8]);
    expect(outs.pooled.shape).toEqual([2, 4, 4, 4]);
    expect(outs.e.shape).toEqual([2, 1, 8, 8]);
  });

  it('counts conv, linear and attention FLOPs', () => {
    const rec = new OnnxRecorderOps(params);
    const x = rec.conv2d(rec.graphInput('x', [2, 3, 8, 8]), 'conv_in.weight', null, { padding: 1 });
    expect(rec.flops).toBe(2 * (2 * C * 8 * 8) * 3 * 3 * 3);
    const t = rec.toTokens(x);
    const before = rec.flops;
    rec.attention(rec.linear(t, 'q.weight', null), t, t, 2);
    expect(rec.flops - before).toBe(2 * 2 * 64 * C * C + 4 * 2 * 2 * 64 * 64 * (C / 2));
  });

  it('matches TfjsOps within 1e-5 relative through onnxruntime, at the recorded and another batch size', async () => {
    const { bytes } = await record(2);
    const session = await ort.InferenceSession.create(bytes);
    expect([...session.inputNames].sort()).toEqual(['context', 'image', 'vec']);
    const errors: Record<string, number> = {};
    for (const n of [2, 3]) {
      const x = inputs(n, 100 + n);
      const want = await tfjsOutputs(x);
      const res = await session.run({
        image: new ort.Tensor('float32', x.img.data, [...x.img.shape]),
        context: new ort.Tensor('float32', x.ctx.data, [...x.ctx.shape]),
        vec: new ort.Tensor('float32', x.vec.data, [...x.vec.shape]),
      });
      for (const k of ['y', 'pooled', 'e']) {
        expect(res[k].dims, k).toEqual(want[k].shape);
        const err = relErr(res[k].data as Float32Array, want[k].data);
        errors[`${k}@${n}`] = err;
        expect(err, `${k} batch ${n}`).toBeLessThan(1e-5);
      }
    }
    console.log(`[onnx-recorder] relative errors vs TfjsOps(cpu) ${JSON.stringify(errors)}`);
    await session.release();
  });

  it('writeModel: weights as ONNX external data (4 KiB-aligned) give the same outputs as the inline model', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diad-onnx-ext-'));
    try {
      const { rec, outs, bytes } = await record(2);
      const inline = await rec.writeModel(join(dir, 'inline.onnx'), outs);
      expect(inline.data).toBeNull();
      expect(statSync(inline.model).size).toBe(bytes.length);
      const ext = await rec.writeModel(join(dir, 'ext.onnx'), outs, { external: true });
      expect(ext.data).toBe(join(dir, 'ext.onnx.data'));
      expect(statSync(ext.model).size).toBeLessThan(bytes.length / 2);
      expect(statSync(ext.data!).size).toBeGreaterThanOrEqual(ext.bytes / 2);
      const x = inputs(2, 5);
      const feeds = {
        image: new ort.Tensor('float32', x.img.data, [...x.img.shape]),
        context: new ort.Tensor('float32', x.ctx.data, [...x.ctx.shape]),
        vec: new ort.Tensor('float32', x.vec.data, [...x.vec.shape]),
      };
      const a = await ort.InferenceSession.create(inline.model);
      const b = await ort.InferenceSession.create(ext.model);
      const ra = await a.run(feeds);
      const rb = await b.run(feeds);
      for (const k of ['y', 'pooled', 'e']) expect([...(rb[k].data as Float32Array)], k).toEqual([...(ra[k].data as Float32Array)]);
      await a.release();
      await b.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bakes host constants in and writes metadata', async () => {
    const rec = new OnnxRecorderOps(params, { metadata: { preset: 'x' } });
    const a = rec.graphInput('a', [1, 3]);
    const c = rec.input(tensor(Float32Array.from([1, 2, 3]), [1, 3]));
    const session = await ort.InferenceSession.create(rec.toModel({ s: rec.mul(rec.add(a, c), a) }));
    const r = await session.run({ a: new ort.Tensor('float32', Float32Array.from([2, -1, 0.5]), [1, 3]) });
    expect([...(r.s.data as Float32Array)]).toEqual([6, -1, 1.75]);
    await session.release();
  });

  it('names missing parameters, mismatched shapes and refuses to read', async () => {
    const rec = new OnnxRecorderOps(params);
    const x = rec.graphInput('x', [1, 3, 8, 8]);
    expect(() => rec.conv2d(x, 'nope.weight', null)).toThrow(/parameter nope.weight is missing/);
    expect(() => rec.conv2d(x, 'down.weight', null)).toThrow(/input has 3 channels, weight expects 16/);
    expect(() => rec.add(x, rec.graphInput('v', [1, 3]))).toThrow(/different ranks/);
    expect(() => rec.graphInput('x', [1])).toThrow(/declared twice/);
    await expect(rec.read(x)).rejects.toThrow(/only records a graph/);
  });
});
