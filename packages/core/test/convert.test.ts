import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { tensor, mask, int32, toLayout } from '../src/index.js';
import { toTf, fromTf } from '../src/tfjs/index.js';

const arange = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3);

for (const backend of ['cpu', 'wasm']) {
  describe(`convert on ${backend}`, () => {
    beforeAll(async () => {
      await tf.setBackend(backend);
      await tf.ready();
    });

    it('toTf turns NCHW into NHWC element by element', async () => {
      const host = tensor(arange(2 * 3 * 4 * 5), [2, 3, 4, 5], 'NCHW');
      const x = toTf(host);
      expect(x.shape).toEqual([2, 4, 5, 3]);
      const d = await x.data();
      // NHWC [b, i, j, c] holds NCHW [b, c, i, j].
      for (const [b, c, i, j] of [
        [0, 0, 0, 0],
        [1, 2, 3, 4],
        [1, 0, 2, 1],
        [0, 2, 0, 3],
      ]) {
        expect(d[((b * 4 + i) * 5 + j) * 3 + c]).toBe(host.data[((b * 3 + c) * 4 + i) * 5 + j]);
      }
      // Same permutation as core's host-side toLayout.
      expect([...d]).toEqual([...toLayout(host, 'NHWC').data]);
      x.dispose();
    });

    it('toTf treats 4-D layout "any" as NCHW, keeps NHWC and other ranks as they are', async () => {
      const data = arange(24);
      const any4 = toTf(tensor(data, [1, 2, 3, 4]));
      expect(any4.shape).toEqual([1, 3, 4, 2]);
      const nhwc = toTf(tensor(data, [1, 3, 4, 2], 'NHWC'));
      expect(nhwc.shape).toEqual([1, 3, 4, 2]);
      expect([...(await nhwc.data())]).toEqual([...data]);
      const tokens = toTf(tensor(data, [2, 3, 4]));
      expect(tokens.shape).toEqual([2, 3, 4]);
      expect([...(await tokens.data())]).toEqual([...data]);
      tf.dispose([any4, nhwc, tokens]);
    });

    it('toTf keeps int32 and widens uint8 masks to int32', async () => {
      const m = toTf(mask(Uint8Array.from([0, 1, 1, 0]), [1, 1, 2, 2]));
      expect(m.dtype).toBe('int32');
      expect([...(await m.data())]).toEqual([0, 1, 1, 0]);
      const t = toTf(int32(Int32Array.from([999, 901, -5]), [3]));
      expect(t.dtype).toBe('int32');
      expect([...(await t.data())]).toEqual([999, 901, -5]);
      tf.dispose([m, t]);
    });

    it('fromTf(toTf(x), "NCHW") is the identity and leaks nothing', async () => {
      const host = tensor(arange(2 * 3 * 4 * 5), [2, 3, 4, 5], 'NCHW');
      const x = toTf(host);
      const before = tf.memory().numTensors;
      const back = await fromTf(x, 'NCHW');
      expect(tf.memory().numTensors).toBe(before);
      expect(back.layout).toBe('NCHW');
      expect(back.shape).toEqual([2, 3, 4, 5]);
      expect([...back.data]).toEqual([...host.data]);
      expect(x.isDisposed).toBe(false);
      const raw = await fromTf(x, 'NHWC');
      expect(raw.shape).toEqual([2, 4, 5, 3]);
      expect(raw.layout).toBe('NHWC');
      x.dispose();
    });

    it('fromTf casts integer tensors to float32 and rejects NCHW for non-maps', async () => {
      const i = tf.tensor([1, 2, 3], [3], 'int32');
      const h = await fromTf(i);
      expect(h.dtype).toBe('float32');
      expect([...h.data]).toEqual([1, 2, 3]);
      expect(h.layout).toBe('any');
      await expect(fromTf(i, 'NCHW')).rejects.toThrow(/layout NCHW needs a 4-D/);
      i.dispose();
    });
  });
}
