/**
 * The Conv2D gradient for the tfjs wasm backend, which has no `Conv2DBackpropFilter` kernel and
 * whose `Conv2DBackpropInput` and transposed/batched matMuls are slow (3-6 GFLOP/s). Both
 * gradients are recast onto wasm's fast XNNPACK paths (plain conv2d and non-transposed matMul,
 * 28-45 GFLOP/s), which trained 4-6x faster than im2col with a transposed matMul when measured
 * on the 2-core development machine:
 * - filter gradient: one matMul `A [kh*kw*Cin, N*Ho*Wo] x dy [N*Ho*Wo, Cout]`, with `A` the im2col
 *   patches built from the channel-major input `[Cin, N, H, W]`, so no operand needs a transpose
 *   (at stride > 1 the patches come from a one-hot depthwise conv instead, see conv2dFilterGrad);
 * - input gradient: a stride-1 conv2d of the zero-upsampled output gradient with the filter
 *   rotated 180 degrees and its in/out channels swapped.
 * NHWC, dilation 1; any stride; 'same', 'valid', numeric and explicit `[[0,0],[t,b],[l,r],[0,0]]`
 * padding (LDM's downsampling pads (0,1,0,1) and convolves with stride 2).
 *
 * tfjs's gradient registry is global (per kernel, not per backend), so the override delegates to
 * the stock gradient whenever the active backend is not wasm.
 */
import * as tf from '@tensorflow/tfjs-core';
import { toEnginePerm } from './params.js';

/** Attributes of the Conv2D kernel that the gradient needs (as tfjs passes them). */
export interface Conv2DGradAttrs {
  strides: number | [number, number];
  pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function convInfo(xShape: number[], filterShape: number[], attrs: Conv2DGradAttrs): tf.backend_util.Conv2DInfo {
  if (attrs.dataFormat === 'NCHW') throw new Error('Conv2D gradient override: only NHWC is supported (tfjs stores maps NHWC)');
  const d = attrs.dilations ?? 1;
  if (!(d === 1 || (Array.isArray(d) && d[0] === 1 && d[1] === 1))) {
    throw new Error(`Conv2D gradient override: dilation ${JSON.stringify(d)} is not supported (only 1)`);
  }
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
}

/** Pads (positive) or crops (negative) axes 1 and 2 of a 4-D tensor. */
function padOrCrop(x: tf.Tensor4D, top: number, bottom: number, left: number, right: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  let y = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const t = Math.max(0, -top);
    const l = Math.max(0, -left);
    y = tf.slice(y, [0, t, l, 0], [n, h - t - Math.max(0, -bottom), w - l - Math.max(0, -right), c]);
  }
  if (top > 0 || bottom > 0 || left > 0 || right > 0) {
    y = tf.pad(y, [
      [0, 0],
      [Math.max(0, top), Math.max(0, bottom)],
      [Math.max(0, left), Math.max(0, right)],
      [0, 0],
    ]);
  }
  return y;
}

/**
 * Gradient of `conv2d(x, filter)` with respect to the filter.
 * Stride 1: `A [kh*kw*Cin, M] x dy [M, Cout]` with `A` stacked shifted slices of the channel-major
 * input. Stride > 1: strided slices are slow on wasm (about 5x slower overall), so the patches
 * `P [M, Cin*kh*kw]` come from a depthwise conv with one-hot filters (XNNPACK, padding and stride
 * handled as in the forward pass) and the product is `dy^T [Cout, M] x P`; only `dy` is transposed.
 * @param x input `[N, H, W, Cin]`.
 * @param filterShape `[kh, kw, Cin, Cout]`.
 * @param dy output gradient `[N, Ho, Wo, Cout]`.
 * @returns `[kh, kw, Cin, Cout]`.
 * @throws Error for NCHW data or dilation other than 1.
 */
export function conv2dFilterGrad(x: tf.Tensor4D, filterShape: number[], dy: tf.Tensor4D, attrs: Conv2DGradAttrs): tf.Tensor4D {
  const info = convInfo(x.shape, filterShape, attrs);
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, outHeight: ho, outWidth: wo } = info;
  const { inChannels: cin, outChannels: cout, batchSize: n, inHeight: h, inWidth: w } = info;
  const { top, left } = info.padInfo;
  const m = n * ho * wo;
  const k = kh * kw;
  if (sh > 1 || sw > 1) {
    return tf.tidy(() => {
      // One-hot depthwise filter: output channel c*k + p copies tap p of input channel c.
      const onehot = new Float32Array(k * cin * k);
      for (let p = 0; p < k; p++) for (let c = 0; c < cin; c++) onehot[(p * cin + c) * k + p] = 1;
      const patches = tf.depthwiseConv2d(x, tf.tensor4d(onehot, [kh, kw, cin, k]), attrs.strides, attrs.pad, 'NHWC', 1, attrs.dimRoundingMode);
      const dyT = tf.transpose(tf.reshape(dy, [m, cout]));
      const g = tf.matMul(dyT, tf.reshape(patches, [m, cin * k]));
      return tf.transpose(tf.reshape(g, [cout, cin, kh, kw]), toEnginePerm(4)!);
    });
  }
  return tf.tidy(() => {
    // Channel-major input [Cin, N, H, W], padded/cropped to exactly the rows and columns read.
    const xc = tf.transpose(padOrCrop(x, top, ho + kh - 1 - h - top, left, wo + kw - 1 - w - left), [3, 0, 1, 2]);
    const cols: tf.Tensor2D[] = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) cols.push(tf.reshape(tf.slice(xc, [0, 0, i, j], [cin, n, ho, wo]), [cin, m]));
    }
    const a = cols.length === 1 ? cols[0] : tf.concat(cols, 0);
    return tf.reshape(tf.matMul(a, tf.reshape(dy, [m, cout])), [kh, kw, cin, cout]);
  });
}

/**
 * Gradient of `conv2d(x, filter)` with respect to the input.
 * (Splitting a stride-s gradient into s*s phase convs + depthToSpace saves the zeros' FLOPs but
 * measured 1.6-2.2x slower on wasm: small-kernel convs and memory ops are slow there.)
 * @param xShape `[N, H, W, Cin]`.
 * @param filter `[kh, kw, Cin, Cout]`.
 * @param dy output gradient `[N, Ho, Wo, Cout]`.
 * @returns `[N, H, W, Cin]`.
 * @throws Error for NCHW data or dilation other than 1.
 */
export function conv2dInputGrad(xShape: number[], filter: tf.Tensor4D, dy: tf.Tensor4D, attrs: Conv2DGradAttrs): tf.Tensor4D {
  const info = convInfo(xShape, filter.shape, attrs);
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, outHeight: ho, outWidth: wo } = info;
  const { outChannels: cout, batchSize: n, inHeight: h, inWidth: w } = info;
  const { top, left } = info.padInfo;
  return tf.tidy(() => {
    // Rotated filter with in/out swapped: [kh, kw, Cout, Cin].
    const flipped = kh === 1 && kw === 1 ? filter : tf.reverse(filter, [0, 1]);
    const wT = tf.transpose(flipped, [0, 1, 3, 2]) as tf.Tensor4D;
    // Zero-upsampled dy: row ho*sh holds dy row ho; trailing (sh-1) zero rows are cropped below.
    let u = dy;
    if (sh > 1 || sw > 1) {
      const spaced = tf.pad(tf.reshape(dy, [n, ho, 1, wo, 1, cout]), [
        [0, 0],
        [0, 0],
        [0, sh - 1],
        [0, 0],
        [0, sw - 1],
        [0, 0],
      ]);
      u = tf.reshape(spaced, [n, ho * sh, wo * sw, cout]);
    }
    const lh = (ho - 1) * sh + 1;
    const lw = (wo - 1) * sw + 1;
    const padded = padOrCrop(u, kh - 1 - top, h + top - lh - (sh - 1), kw - 1 - left, w + left - lw - (sw - 1));
    return tf.conv2d(padded, wT, 1, 'valid');
  });
}

let stock: tf.GradConfig | undefined;

const override: tf.GradConfig = {
  kernelName: tf.Conv2D,
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    if (tf.getBackend() !== 'wasm' && stock) return stock.gradFunc(dy, saved, attrs);
    const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
    const a = attrs as unknown as Conv2DGradAttrs;
    const g = dy as tf.Tensor4D;
    return {
      x: () => conv2dInputGrad(x.shape, filter, g, a),
      filter: () => conv2dFilterGrad(x, filter.shape, g, a),
    };
  },
};

/**
 * Registers the Conv2D gradient override (idempotent; re-registers it if something re-registered
 * the stock gradient since). The stock gradient is kept and used on every backend but wasm.
 * @returns false when tfjs has no Conv2D gradient registered yet (load the gradients first, see
 *   `initTfjs`), true once the override is in place.
 */
export function installConv2DGradOverride(): boolean {
  const registered = tf.getGradient(tf.Conv2D);
  if (registered === override) return true;
  if (!registered) return false;
  stock = registered;
  tf.registerGradient(override);
  return true;
}

/** tfjs's own Conv2D gradient as it was before the override (undefined before installation). */
export function stockConv2DGradient(): tf.GradConfig | undefined {
  return stock;
}
