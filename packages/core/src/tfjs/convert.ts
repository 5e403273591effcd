/**
 * Conversions between host tensors (stage boundaries, NCHW) and tfjs tensors (NHWC inside).
 */
import * as tf from '@tensorflow/tfjs-core';
import { tensor, type DType, type HostTensor } from '../tensor.js';

/**
 * A host tensor as a new tfjs tensor. 4-D tensors with layout `NCHW` (or `any`: 4-D tensors at
 * stage boundaries and in the official fixtures are NCHW) become NHWC `[N, H, W, C]`; `NHWC` and
 * other ranks are kept as they are. float32 and int32 keep their dtype; uint8 masks become int32
 * (tfjs has no uint8). The caller owns (disposes) the result.
 */
export function toTf(t: HostTensor<DType>): tf.Tensor {
  const dtype = t.dtype === 'float32' ? 'float32' : 'int32';
  const data = t.dtype === 'uint8' ? Int32Array.from(t.data) : t.data;
  const x = tf.tensor(data, [...t.shape], dtype);
  if (t.shape.length !== 4 || t.layout === 'NHWC') return x;
  const y = tf.transpose(x, [0, 2, 3, 1]);
  x.dispose();
  return y;
}

/**
 * Reads a tfjs tensor back to a float32 host tensor (int/bool tensors are cast).
 * With `layout` `'NCHW'` a 4-D NHWC tensor is permuted to NCHW `[N, C, H, W]`; with `'NHWC'` or
 * `'any'` the data is copied as it is. Reads with `await data()` outside any `tf.tidy` (returning
 * typed arrays out of tidy makes it walk them element by element). The input is not disposed.
 * @throws Error when `layout` is `'NCHW'` and the tensor is not 4-D.
 */
export async function fromTf(x: tf.Tensor, layout: 'NCHW' | 'NHWC' | 'any' = 'any'): Promise<HostTensor<'float32'>> {
  if (layout === 'NCHW' && x.rank !== 4) {
    throw new Error(`fromTf: layout NCHW needs a 4-D NHWC tensor, got shape [${x.shape.join(', ')}]`);
  }
  const permuted = layout === 'NCHW' ? tf.transpose(x, [0, 3, 1, 2]) : x;
  const cast = permuted.dtype === 'float32' ? permuted : tf.cast(permuted, 'float32');
  try {
    const data = (await cast.data()) as Float32Array;
    return tensor(data, cast.shape, layout);
  } finally {
    if (cast !== x) cast.dispose();
    if (permuted !== x && permuted !== cast) permuted.dispose();
  }
}
