/**
 * Input gradient of depthwise convolution for the tfjs wasm backend, which has no
 * `DepthwiseConv2dNativeBackpropInput` kernel (MobileNetV2's perceptual loss needs it).
 * The gradient is a stride-1 depthwise conv of the zero-upsampled output gradient with the
 * filter rotated 180 degrees, the same recast `@diad/core/tfjs`'s `conv-grad.ts` uses for Conv2D.
 *
 * tfjs's gradient registry is global, so the override delegates to the stock gradient on every
 * backend but wasm, and for the filter gradient (frozen backbones never need it).
 */
import * as tf from '@tensorflow/tfjs-core';

interface DepthwiseAttrs {
  strides: number | [number, number];
  pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function crop(x: tf.Tensor4D, top: number, bottom: number, left: number, right: number): tf.Tensor4D {
  const p = tf.pad(x, [[0, 0], [Math.max(0, top), Math.max(0, bottom)], [Math.max(0, left), Math.max(0, right)], [0, 0]]);
  const [n, h, w, c] = p.shape;
  const t = Math.max(0, -top);
  const l = Math.max(0, -left);
  return tf.slice(p, [0, t, l, 0], [n, h - t - Math.max(0, -bottom), w - l - Math.max(0, -right), c]);
}

/**
 * dL/dx of `tf.depthwiseConv2d(x, filter, strides, pad)` (NHWC, channel multiplier 1, dilation 1).
 * @param xShape `[N, H, W, C]`; @param filter `[kh, kw, C, 1]`; @param dy `[N, Ho, Wo, C]`.
 * @returns `[N, H, W, C]`.
 * @throws Error for a channel multiplier or dilation other than 1.
 */
export function depthwiseInputGrad(xShape: number[], filter: tf.Tensor4D, dy: tf.Tensor4D, attrs: DepthwiseAttrs): tf.Tensor4D {
  const d = attrs.dilations ?? 1;
  if (!(d === 1 || (Array.isArray(d) && d[0] === 1 && d[1] === 1))) throw new Error(`depthwise gradient override: dilation ${JSON.stringify(d)} is not supported`);
  if (filter.shape[3] !== 1) throw new Error(`depthwise gradient override: channel multiplier ${filter.shape[3]} is not supported (only 1)`);
  const info = tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number], filter.shape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, true);
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, outHeight: ho, outWidth: wo, inHeight: h, inWidth: w } = info;
  const { top, left } = info.padInfo;
  const [n, , , c] = xShape;
  return tf.tidy(() => {
    let u = dy;
    if (sh > 1 || sw > 1) {
      const spaced = tf.pad(tf.reshape(dy, [n, ho, 1, wo, 1, c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
      u = tf.reshape(spaced, [n, ho * sh, wo * sw, c]);
    }
    const lh = (ho - 1) * sh + 1;
    const lw = (wo - 1) * sw + 1;
    const padded = crop(u, kh - 1 - top, h + top - lh - (sh - 1), kw - 1 - left, w + left - lw - (sw - 1));
    return tf.depthwiseConv2d(padded, tf.reverse(filter, [0, 1]) as tf.Tensor4D, 1, 'valid');
  });
}

let stock: tf.GradConfig | undefined;

const override: tf.GradConfig = {
  kernelName: tf.DepthwiseConv2dNative,
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const grads = stock!.gradFunc(dy, saved, attrs);
    if (tf.getBackend() !== 'wasm') return grads;
    const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
    return { ...grads, x: () => depthwiseInputGrad(x.shape, filter, dy as tf.Tensor4D, attrs as unknown as DepthwiseAttrs) };
  },
};

/**
 * Registers the override (idempotent). Needs tfjs's gradients registered first (importing
 * `@tensorflow/tfjs-layers` or `initTfjs` from `@diad/core/tfjs` does it).
 * @returns false when no stock gradient is registered yet, true once the override is in place.
 */
export function installDepthwiseGradOverride(): boolean {
  const registered = tf.getGradient(tf.DepthwiseConv2dNative);
  if (registered === override) return true;
  if (!registered) return false;
  stock = registered;
  tf.registerGradient(override);
  return true;
}
