import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-layers';
import { depthwiseInputGrad } from '../src/index.js';

describe('depthwiseInputGrad', () => {
  it('equals tfjs stock depthwise input gradient (cpu backend) for strides 1 and 2, same and valid padding', async () => {
    await tf.setBackend('cpu');
    const cases = [[1, 'same', 9], [2, 'valid', 9], [2, 'valid', 10], [2, 'same', 7], [1, 'valid', 6]] as const;
    for (const [stride, pad, hw] of cases) {
      const x = tf.randomNormal([2, hw, hw + 1, 5], 0, 1, 'float32', 1) as tf.Tensor4D;
      const f = tf.randomNormal([3, 3, 5, 1], 0, 1, 'float32', 2) as tf.Tensor4D;
      const y = tf.depthwiseConv2d(x, f, stride, pad);
      const dy = tf.randomNormal(y.shape, 0, 1, 'float32', 3) as tf.Tensor4D;
      const stock = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(tf.depthwiseConv2d(xx as tf.Tensor4D, f, stride, pad), dy)))(x);
      const ours = depthwiseInputGrad(x.shape, f, dy, { strides: stride, pad });
      expect(ours.shape).toEqual(x.shape);
      expect(tf.max(tf.abs(tf.sub(stock, ours))).dataSync()[0]).toBeLessThan(1e-5);
      tf.dispose([x, f, y, dy, stock, ours]);
    }
  });
});
