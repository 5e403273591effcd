import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initTfjs } from '../src/tfjs/engine.js';
import { conv2dFilterGrad, conv2dInputGrad, stockConv2DGradient, type Conv2DGradAttrs } from '../src/tfjs/conv-grad.js';

type Pad = Conv2DGradAttrs['pad'];
const LDM_DOWN: Pad = [
  [0, 0],
  [0, 1],
  [0, 1],
  [0, 0],
];
const SYM1: Pad = [
  [0, 0],
  [1, 1],
  [1, 1],
  [0, 0],
];

// [stride, pad, kernel, H, W]: odd and even sizes so 'same' pads asymmetrically at stride 2.
const CASES: [number, Pad, number, number, number][] = [];
for (const stride of [1, 2]) for (const pad of ['same', 'valid', LDM_DOWN, SYM1] as Pad[]) for (const k of [1, 3]) CASES.push([stride, pad, k, 8 + stride, 7]);

function relErr(a: tf.Tensor, ref: tf.Tensor): number {
  const d = tf.max(tf.abs(tf.sub(a, ref))).dataSync()[0];
  const m = tf.max(tf.abs(ref)).dataSync()[0];
  return d / m;
}

/** Seeded inputs (tf.randomNormal with a seed is backend independent). */
function inputs(h: number, w: number, k: number, stride: number, pad: Pad) {
  const x = tf.randomNormal([2, h, w, 5], 0, 1, 'float32', 1) as tf.Tensor4D;
  const f = tf.randomNormal([k, k, 5, 6], 0, 1, 'float32', 2) as tf.Tensor4D;
  const y = tf.conv2d(x, f, stride, pad as 'same');
  const dy = tf.randomNormal(y.shape, 0, 1, 'float32', 3) as tf.Tensor4D;
  return { x, f, dy };
}

let stock: tf.GradConfig;

beforeAll(async () => {
  const info = await initTfjs({ engine: 'wasm' });
  expect(info.conv2dGradOverride).toBe(true);
  stock = stockConv2DGradient()!;
  expect(stock).toBeDefined();
  expect(tf.getGradient(tf.Conv2D)).not.toBe(stock);
});

describe('Conv2D gradient override', () => {
  it('is needed: the stock filter gradient has no wasm kernel', async () => {
    await tf.setBackend('wasm');
    const { x, f, dy } = inputs(6, 6, 3, 1, 'same');
    const g = stock.gradFunc(dy, [x, f], { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1 });
    expect(() => g.filter()).toThrow(/Conv2DBackpropFilter/);
  });

  it.each(CASES)('stride %i pad %j kernel %i (%ix%i) matches the cpu backend stock gradients', async (stride, pad, k, h, w) => {
    const attrs: Conv2DGradAttrs = { strides: stride, pad, dataFormat: 'NHWC', dilations: 1 };
    await tf.setBackend('cpu');
    const c = inputs(h, w, k, stride, pad);
    const ref = stock.gradFunc(c.dy, [c.x, c.f], attrs as unknown as tf.NamedAttrMap);
    const refX = ref.x();
    const refF = ref.filter();
    expect(refX.shape).toEqual([2, h, w, 5]);

    // The decomposition itself, on cpu.
    expect(relErr(conv2dInputGrad(c.x.shape, c.f, c.dy, attrs), refX)).toBeLessThanOrEqual(1e-5);
    expect(relErr(conv2dFilterGrad(c.x, c.f.shape, c.dy, attrs), refF)).toBeLessThanOrEqual(1e-5);

    // End to end on wasm through tf.grads, i.e. through the registered override.
    await tf.setBackend('wasm');
    const wv = inputs(h, w, k, stride, pad);
    const [gx, gf] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad as 'same'), wv.dy)))([
      wv.x,
      wv.f,
    ]);
    const onCpu = async (t: tf.Tensor) => tf.tensor(await t.data(), t.shape);
    const [gxData, gfData] = [await onCpu(gx), await onCpu(gf)];
    await tf.setBackend('cpu');
    expect(relErr(gxData, refX)).toBeLessThanOrEqual(1e-5);
    expect(relErr(gfData, refF)).toBeLessThanOrEqual(1e-5);
  });

  it.each([
    [[1, 2], 'same', 3],
    [[2, 1], LDM_DOWN, 3],
    [[3, 3], 'same', 3],
    [[2, 3], 'valid', 1],
  ] as [[number, number], Pad, number][])('strides %j pad %j kernel %i match too', async (strides, pad, k) => {
    const attrs: Conv2DGradAttrs = { strides, pad, dataFormat: 'NHWC', dilations: 1 };
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const x = tf.randomNormal([2, 10, 11, 3], 0, 1, 'float32', 4) as tf.Tensor4D;
      const f = tf.randomNormal([k, k, 3, 4], 0, 1, 'float32', 5) as tf.Tensor4D;
      const dy = tf.randomNormal(tf.conv2d(x, f, strides, pad as 'same').shape, 0, 1, 'float32', 6) as tf.Tensor4D;
      const gx = tf.tensor(await conv2dInputGrad(x.shape, f, dy, attrs).data(), x.shape);
      const gf = tf.tensor(await conv2dFilterGrad(x, f.shape, dy, attrs).data(), f.shape);
      await tf.setBackend('cpu');
      const ref = stock.gradFunc(
        tf.tensor(await dy.data(), dy.shape),
        [tf.tensor(await x.data(), x.shape), tf.tensor(await f.data(), f.shape)],
        attrs as unknown as tf.NamedAttrMap,
      );
      expect(relErr(gx, ref.x())).toBeLessThanOrEqual(1e-5);
      expect(relErr(gf, ref.filter())).toBeLessThanOrEqual(1e-5);
    }
  });

  it('delegates to the stock gradient on other backends', async () => {
    await tf.setBackend('cpu');
    const { x, f } = inputs(5, 5, 3, 1, 'same');
    const [, gf] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same')))([x, f]);
    const ref = stock.gradFunc(tf.onesLike(tf.conv2d(x, f, 1, 'same')), [x, f], { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1 }).filter();
    expect(Array.from(gf.dataSync())).toEqual(Array.from(ref.dataSync()));
  });

  it('rejects dilation and NCHW with a clear error', () => {
    const x = tf.zeros([1, 5, 5, 2]) as tf.Tensor4D;
    const dy = tf.zeros([1, 5, 5, 3]) as tf.Tensor4D;
    expect(() => conv2dFilterGrad(x, [3, 3, 2, 3], dy, { strides: 1, pad: 'same', dilations: 2 })).toThrow(/dilation 2 is not supported/);
    expect(() => conv2dFilterGrad(x, [3, 3, 2, 3], dy, { strides: 1, pad: 'same', dataFormat: 'NCHW' })).toThrow(/only NHWC/);
  });
});
