/**
 * TEMPORARY WORKAROUND (remove when core's `TfjsOps.attention` handles short sequences fast):
 * core's attention unstacks q/k/v into N x heads single-batch matMuls, which wins for long
 * sequences on wasm but costs 6-15x more than one batched matMul for the short token sequences
 * of CPU presets (measured on wasm, fwd+bwd, q [8, 64, 64], 4 heads: 376 ms vs 62 ms; cross-attention
 * with 4 context tokens: 125 ms vs 8 ms). This subclass uses a batched matMul when
 * `Lq * Lk <= 4096` and core's path otherwise. Same math: softmax(q k^T / sqrt(d)) v per head.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TfjsOps } from '@diad/core/tfjs';

const SHORT = 64 * 64;

export class ShortAttentionTfjsOps extends TfjsOps {
  override attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number): tf.Tensor {
    const lq = q.shape[1] as number;
    const lk = k.shape[1] as number;
    if (q.rank !== 3 || k.rank !== 3 || lq * lk > SHORT) return super.attention(q, k, v, heads);
    const [n, , c] = q.shape as [number, number, number];
    if (c % heads !== 0 || k.shape[2] !== c || v.shape[2] !== c) return super.attention(q, k, v, heads);
    const d = c / heads;
    return tf.tidy(() => {
      const perHead = (t: tf.Tensor, len: number) => tf.reshape(tf.transpose(tf.reshape(t, [n, len, heads, d]), [0, 2, 1, 3]), [n * heads, len, d]);
      const w = tf.softmax(tf.matMul(perHead(tf.mul(q, 1 / Math.sqrt(d)), lq), perHead(k, lk), false, true));
      const o = tf.matMul(w, perHead(v, lk));
      return tf.reshape(tf.transpose(tf.reshape(o, [n, heads, lq, d]), [0, 2, 1, 3]), [n, lq, c]);
    });
  }
}
