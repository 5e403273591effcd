/**
 * `TfjsOps`: the tfjs implementation of core's {@link Ops}.
 *
 * Maps are NHWC `[N, H, W, C]` inside (logically NCHW for model code), tokens `[N, L, C]`.
 * Parameters come from a {@link ParamStore} by official name. Every op is built from tfjs ops with
 * registered gradients, so `tf.variableGrads` trains through it; ops whose gradient needs kernels
 * the wasm backend lacks (`UnsortedSegmentSum`: gather-based tricks) are avoided, and convs use
 * only `same`/`valid` padding on plain `tf.conv2d` (not the fused conv) so a Conv2D gradient
 * override (for wasm's missing `Conv2DBackpropFilter`) applies. Each op runs in `tf.tidy`;
 * the caller disposes what an op returns (typically with a `tf.tidy` around the whole model).
 */
import * as tf from '@tensorflow/tfjs-core';
import { causalMask, pads, type AttentionOptions, type Conv2dOptions, type Ops } from '../ops.js';
import type { HostTensor } from '../tensor.js';
import { fromTf, toTf } from './convert.js';
import type { ParamStore } from './params.js';

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

function map4(x: tf.Tensor, op: string): tf.Tensor4D {
  if (x.rank !== 4) throw new Error(`${op}: needs a feature map (4-D), got shape ${fmt(x.shape)}`);
  return x as tf.Tensor4D;
}

/**
 * The tfjs implementation of {@link Ops}: eager, differentiable, NHWC inside.
 * Works on any tfjs backend (wasm, cpu, node); `engine` reports `tfjs-<backend>`.
 */
/** Attention sizes (Lq * Lk) up to which one batched matMul beats per-head 2-D matMuls on wasm. */
const SHORT_ATTENTION = 64 * 64;

export class TfjsOps implements Ops<tf.Tensor> {
  /** @param params the parameters, by official name; the ops never dispose them. */
  constructor(readonly params: ParamStore) {}

  get engine(): string {
    return `tfjs-${tf.getBackend()}`;
  }

  /** Host tensor to tfjs: 4-D (NCHW or `any`) maps become NHWC; see {@link toTf}. */
  input(t: HostTensor<'float32'>): tf.Tensor {
    return toTf(t);
  }

  /** tfjs tensor to host: 4-D maps come back NCHW; the input is not disposed. */
  read(x: tf.Tensor): Promise<HostTensor<'float32'>> {
    return fromTf(x, x.rank === 4 ? 'NCHW' : 'any');
  }

  /** Logical shape: `[N, C, H, W]` for maps, as stored otherwise (tokens `[N, L, C]`). */
  shape(x: tf.Tensor): number[] {
    const s = x.shape;
    return s.length === 4 ? [s[0], s[3], s[1], s[2]] : [...s];
  }

  /**
   * `nn.Conv2d` (e.g. LDM `ResnetBlock.conv1`, `Downsample.conv` with `pad=(0,1,0,1)`, stride 2).
   * Symmetric padding p with stride 1 and kernel 2p+1 runs as `same`, p = 0 as `valid`; any other
   * padding is applied with `tf.pad` first (PyTorch pads explicitly, tfjs `same` differs at stride 2).
   * @throws Error when the input channels do not match the weight.
   */
  conv2d(x: tf.Tensor, weight: string, bias: string | null, options: Conv2dOptions = {}): tf.Tensor {
    const stride = options.stride ?? 1;
    const [t, b, l, r] = pads(options.padding);
    const w = this.params.get(weight) as tf.Tensor4D;
    const [kh, kw, cin] = w.shape;
    const m = map4(x, `conv2d(${weight})`);
    if (m.shape[3] !== cin) {
      throw new Error(`conv2d(${weight}): input has ${m.shape[3]} channels, weight expects ${cin} (official shape ${fmt(this.params.officialShape(weight))})`);
    }
    return tf.tidy(() => {
      let y: tf.Tensor4D;
      if (t === 0 && b === 0 && l === 0 && r === 0) y = tf.conv2d(m, w, stride, 'valid');
      else if (stride === 1 && t === b && l === r && t === l && kh === 2 * t + 1 && kw === 2 * t + 1) y = tf.conv2d(m, w, 1, 'same');
      else
        y = tf.conv2d(
          tf.pad(m, [
            [0, 0],
            [t, b],
            [l, r],
            [0, 0],
          ]),
          w,
          stride,
          'valid',
        );
      return bias === null ? y : tf.add(y, this.params.get(bias));
    });
  }

  /**
   * `nn.Linear` over the last axis (e.g. `time_embed.0`, attention `to_q`): `x @ W^T + b` as a
   * single 2-D matMul without transposes (the fast path of wasm's XNNPACK).
   * @throws Error when the last axis does not match the weight's `in`.
   */
  linear(x: tf.Tensor, weight: string, bias: string | null): tf.Tensor {
    const w = this.params.get(weight) as tf.Tensor2D;
    const [cin, cout] = w.shape;
    if (x.shape[x.rank - 1] !== cin) {
      throw new Error(
        `linear(${weight}): last axis is ${x.shape[x.rank - 1]}, weight expects ${cin} (official shape ${fmt(this.params.officialShape(weight))})`,
      );
    }
    return tf.tidy(() => {
      const y = tf.matMul(tf.reshape(x, [-1, cin]), w);
      const yb = bias === null ? y : tf.add(y, this.params.get(bias));
      return tf.reshape(yb, [...x.shape.slice(0, -1), cout]);
    });
  }

  /**
   * `nn.GroupNorm(groups, C, eps)` (LDM `Normalize`: 32 groups, eps 1e-6): per sample and group,
   * mean and biased variance over (C/groups, H, W), then the optional per-channel affine.
   * @throws Error when C is not divisible by `groups`.
   */
  groupNorm(x: tf.Tensor, groups: number, weight: string | null, bias: string | null, eps: number): tf.Tensor {
    const m = map4(x, 'groupNorm');
    const [n, h, w, c] = m.shape;
    if (!Number.isInteger(groups) || groups <= 0 || c % groups !== 0) {
      throw new Error(`groupNorm: ${c} channels cannot be split into ${groups} groups`);
    }
    return tf.tidy(() => {
      const g = tf.reshape(m, [n, h, w, groups, c / groups]);
      const { mean, variance } = tf.moments(g, [1, 2, 4], true);
      const normed = tf.reshape(tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, eps))), [n, h, w, c]);
      return this.affine(normed, weight, bias);
    });
  }

  /** `nn.InstanceNorm2d(C)` defaults: per sample and channel over (H, W), biased variance, no affine. */
  instanceNorm(x: tf.Tensor, eps: number): tf.Tensor {
    const m = map4(x, 'instanceNorm');
    return tf.tidy(() => {
      const { mean, variance } = tf.moments(m, [1, 2], true);
      return tf.mul(tf.sub(m, mean), tf.rsqrt(tf.add(variance, eps)));
    });
  }

  /** `nn.LayerNorm(C)` over the last axis (SpatialTransformer `norm1..3`), affine `[C]`. */
  layerNorm(x: tf.Tensor, weight: string, bias: string, eps: number): tf.Tensor {
    return tf.tidy(() => {
      const { mean, variance } = tf.moments(x, [x.rank - 1], true);
      return this.affine(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), weight, bias);
    });
  }

  private affine(x: tf.Tensor, weight: string | null, bias: string | null): tf.Tensor {
    const scaled = weight === null ? x : tf.mul(x, this.params.get(weight));
    return bias === null ? scaled : tf.add(scaled, this.params.get(bias));
  }

  /** `nn.SiLU` / LDM `nonlinearity`: `x * sigmoid(x)`. */
  silu(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
  }

  /** Exact `F.gelu` (PyTorch default, used by LDM `GEGLU`): `0.5 x (1 + erf(x / sqrt 2))`. */
  gelu(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
  }

  /**
   * Scaled dot-product attention (LDM `CrossAttention`, `AttnBlock`): q `[N, Lq, C]`, k and v
   * `[N, Lk, C]`, C split into `heads` heads of d = C/heads; softmax(q k^T / sqrt(d)) v with
   * heads merged back, `[N, Lq, C]`.
   *
   * Two equal computations, chosen by size, because wasm's matMul speed depends on the shape:
   * for long sequences (Lq * Lk > 4096) plain 2-D matMuls per sample and head, with k transposed
   * once beforehand (measured for N 2, L 1024, C 320, 8 heads: 0.8 s, against 6.4 s batched and
   * 1.8 s batched with transposed k); for the short sequences of CPU presets one batched matMul
   * (measured fwd+bwd, q [8, 64, 64], 4 heads: 62 ms against 376 ms per head).
   * With `causal`, {@link causalMask} is added to the scores before the softmax.
   * @throws Error on mismatched shapes, C not divisible by `heads`, or a causal mask with Lq != Lk.
   */
  attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number, options: AttentionOptions = {}): tf.Tensor {
    if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) {
      throw new Error(`attention: q, k, v must be tokens [N, L, C], got ${fmt(q.shape)}, ${fmt(k.shape)}, ${fmt(v.shape)}`);
    }
    const [n, lq, c] = q.shape as [number, number, number];
    const lk = k.shape[1] as number;
    if (k.shape[0] !== n || v.shape[0] !== n || k.shape[2] !== c || v.shape[2] !== c || v.shape[1] !== lk) {
      throw new Error(`attention: shapes q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} do not agree`);
    }
    if (!Number.isInteger(heads) || heads <= 0 || c % heads !== 0) throw new Error(`attention: ${c} channels cannot be split into ${heads} heads`);
    if (options.causal && lq !== lk) throw new Error(`attention: a causal mask needs as many queries as keys, got ${lq} and ${lk}`);
    const d = c / heads;
    const nh = n * heads;
    return tf.tidy(() => {
      const mask = options.causal ? tf.tensor2d(causalMask(lq), [lq, lk]) : null;
      const softmax = (scores: tf.Tensor) => tf.softmax(mask ? tf.add(scores, mask) : scores);
      // [N, L, C] -> [N*heads, L, d] (or [N*heads, d, L] for k^T).
      const split = (t: tf.Tensor, len: number, perm: number[], shape: number[]): tf.Tensor =>
        tf.reshape(tf.transpose(tf.reshape(t, [n, len, heads, d]), perm), shape);
      const qh = split(tf.mul(q, 1 / Math.sqrt(d)), lq, [0, 2, 1, 3], [nh, lq, d]);
      const vh = split(v, lk, [0, 2, 1, 3], [nh, lk, d]);
      let out: tf.Tensor;
      if (lq * lk <= SHORT_ATTENTION) {
        out = tf.matMul(softmax(tf.matMul(qh, split(k, lk, [0, 2, 1, 3], [nh, lk, d]), false, true)), vh);
      } else {
        const kth = split(k, lk, [0, 2, 3, 1], [nh, d, lk]);
        const one = (i: number, t: tf.Tensor, rows: number, cols: number) => tf.reshape(tf.slice(t, [i, 0, 0], [1, rows, cols]), [rows, cols]);
        const outs: tf.Tensor[] = [];
        for (let i = 0; i < nh; i++) outs.push(tf.matMul(softmax(tf.matMul(one(i, qh, lq, d), one(i, kth, d, lk))), one(i, vh, lk, d)));
        out = nh === 1 ? outs[0] : tf.stack(outs);
      }
      return tf.reshape(tf.transpose(tf.reshape(out, [n, heads, lq, d]), [0, 2, 1, 3]), [n, lq, c]);
    });
  }

  /**
   * `F.interpolate(x, scale_factor=2, mode="nearest")` (LDM `Upsample`). Built from concats
   * (exact gradient on every backend; the cpu backend's resizeNearestNeighbor gradient is wrong).
   */
  upsampleNearest2x(x: tf.Tensor): tf.Tensor {
    const m = map4(x, 'upsampleNearest2x');
    const [n, h, w, c] = m.shape;
    // Own gradient (the 2x2 block sum): the concats' SplitV gradient dominated wasm training time.
    const up = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const t = args[0] as tf.Tensor;
      const cols = tf.reshape(t, [n, h, w, 1, c]);
      const wide = tf.reshape(tf.concat([cols, cols], 3), [n, h, 1, 2 * w * c]);
      return {
        value: tf.reshape(tf.concat([wide, wide], 2), [n, 2 * h, 2 * w, c]),
        gradFunc: (dy: tf.Tensor) => tf.sum(tf.reshape(dy, [n, h, 2, w, 2, c]), [2, 4]),
      };
    });
    return tf.tidy(() => up(m));
  }

  /** `F.avg_pool2d(x, kernel, stride)` without padding (floor mode), e.g. LDM `Downsample` without conv. */
  avgPool2d(x: tf.Tensor, kernel: number, stride: number): tf.Tensor {
    const m = map4(x, 'avgPool2d');
    return tf.tidy(() => tf.avgPool(m, kernel, stride, 'valid'));
  }

  /** `torch.cat(xs, dim=1)` of maps (UNet skip connections); tokens concatenate on the last axis. */
  concatChannels(xs: tf.Tensor[]): tf.Tensor {
    if (xs.length === 0) throw new Error('concatChannels: no tensors');
    const rank = xs[0].rank;
    if (xs.some((x) => x.rank !== rank)) throw new Error(`concatChannels: ranks differ: ${xs.map((x) => fmt(this.shape(x))).join(', ')}`);
    return tf.concat(xs, rank - 1);
  }

  /** `torch.split(x, sizes, dim=1)` for maps (e.g. moments into mean/logvar), last axis for tokens (GEGLU). */
  split(x: tf.Tensor, sizes: number[]): tf.Tensor[] {
    const total = x.shape[x.rank - 1];
    if (sizes.reduce((a, s) => a + s, 0) !== total) {
      throw new Error(`split: sizes [${sizes.join(', ')}] do not add up to ${total} channels of ${fmt(this.shape(x))}`);
    }
    return tf.split(x, sizes, x.rank - 1);
  }

  /** `rearrange(x, 'b c h w -> b (h w) c')`: a reshape of NHWC. */
  toTokens(x: tf.Tensor): tf.Tensor {
    const [n, h, w, c] = map4(x, 'toTokens').shape;
    return tf.reshape(x, [n, h * w, c]);
  }

  /** `rearrange(x, 'b (h w) c -> b c h w')`. @throws Error when L != height * width. */
  fromTokens(x: tf.Tensor, height: number, width: number): tf.Tensor {
    if (x.rank !== 3 || x.shape[1] !== height * width) {
      throw new Error(`fromTokens: tokens ${fmt(x.shape)} cannot form a ${height}x${width} map`);
    }
    const [n, , c] = x.shape as [number, number, number];
    return tf.reshape(x, [n, height, width, c]);
  }

  /** Elementwise `a + b` (broadcasting between equal ranks or with a scalar). */
  add(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    this.checkBroadcast('add', a, b);
    return tf.add(a, b);
  }

  sub(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    this.checkBroadcast('sub', a, b);
    return tf.sub(a, b);
  }

  mul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    this.checkBroadcast('mul', a, b);
    return tf.mul(a, b);
  }

  /** `x * s`. */
  scale(x: tf.Tensor, s: number): tf.Tensor {
    return tf.mul(x, s);
  }

  /** `x + v[:, :, None, None]` (ResBlock time embedding): map `[N, C, H, W]`, v `[N, C]`. */
  addChannels(x: tf.Tensor, v: tf.Tensor): tf.Tensor {
    const [n, , , c] = map4(x, 'addChannels').shape;
    if (v.rank !== 2 || (v.shape[0] !== n && v.shape[0] !== 1) || v.shape[1] !== c) {
      throw new Error(`addChannels: vector ${fmt(v.shape)} does not match map ${fmt(this.shape(x))}; expected [${n}, ${c}]`);
    }
    return tf.tidy(() => tf.add(x, tf.reshape(v, [v.shape[0] as number, 1, 1, c])));
  }

  /** `torch.clamp(x, lo, hi)` (e.g. posterior logvar to [-30, 20]). */
  clamp(x: tf.Tensor, lo: number, hi: number): tf.Tensor {
    return tf.clipByValue(x, lo, hi);
  }

  exp(x: tf.Tensor): tf.Tensor {
    return tf.exp(x);
  }

  abs(x: tf.Tensor): tf.Tensor {
    return tf.abs(x);
  }

  addScalar(x: tf.Tensor, s: number): tf.Tensor {
    return tf.add(x, s);
  }

  mean(x: tf.Tensor): tf.Tensor {
    return tf.mean(x);
  }

  sum(x: tf.Tensor): tf.Tensor {
    return tf.sum(x);
  }

  /**
   * NHWC and NCHW broadcast alike only between tensors of equal rank (or scalars): a lower-rank
   * operand would align with W in NCHW but with C in NHWC, so it is rejected.
   */
  private checkBroadcast(op: string, a: tf.Tensor, b: tf.Tensor): void {
    if (a.rank !== b.rank && a.rank !== 0 && b.rank !== 0 && (a.rank === 4 || b.rank === 4)) {
      throw new Error(
        `${op}: shapes ${fmt(this.shape(a))} and ${fmt(this.shape(b))} have different ranks; broadcast a map only with a map (use addChannels for per-channel vectors)`,
      );
    }
  }
}
