/**
 * `Ops`: the backend-neutral, layer-level operations that model code is written against.
 *
 * Model code (AutoencoderKL, UNet, SG network, feature extractors) is written once against this
 * interface; each engine implements it: tfjs (eager, trainable through `tf.variableGrads`) and the
 * ONNX recorder (`@diad/core/onnx`, whose graphs onnxruntime-node runs, and differentiates with
 * `appendBackward` for training). Losses are written against it too, so both engines train from
 * one definition.
 *
 * Conventions every implementation keeps:
 * - A feature map is logically NCHW `[N, C, H, W]`; the engine may store it otherwise (tfjs uses
 *   NHWC inside). Model code never touches axes directly; it uses the map/token helpers here.
 * - Tokens are `[N, L, C]` (sequence of channel vectors), as in the official SpatialTransformer.
 * - Parameters are referred to by their official state-dict name (e.g.
 *   `model.diffusion_model.input_blocks.0.0.weight`); the engine owns their storage and layout
 *   (official layout is conv `[out, in, kh, kw]`, linear `[out, in]`).
 */
import type { HostTensor } from './tensor.js';

/** Padding of a conv: one number for all sides, or `[top, bottom, left, right]`. */
export type Padding = number | readonly [number, number, number, number];

/**
 * A conv's padding as `[top, bottom, left, right]`.
 * @throws Error when a value is not a non-negative integer.
 */
export function pads(p: Padding | undefined): [number, number, number, number] {
  const v = p ?? 0;
  const out: [number, number, number, number] = typeof v === 'number' ? [v, v, v, v] : [v[0], v[1], v[2], v[3]];
  if (out.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`conv2d: padding must be non-negative integers, got ${JSON.stringify(p)}`);
  return out;
}

/** Options of {@link Ops.attention}. */
export interface AttentionOptions {
  /**
   * Causal: query i attends to keys 0..i only (a text transformer's mask, e.g. CLIP's
   * `_build_causal_attention_mask`); needs Lq = Lk. Default false.
   */
  causal?: boolean;
}

/**
 * The additive causal mask `[L, L]`: 0 on and below the diagonal, float32's lowest value above it
 * (as HF transformers' CLIP: exactly 0 after softmax, and never NaN where a row could be all masked).
 */
export function causalMask(length: number): Float32Array {
  const m = new Float32Array(length * length);
  for (let i = 0; i < length; i++) m.fill(-3.4028234663852886e38, i * length + i + 1, (i + 1) * length);
  return m;
}

export interface Conv2dOptions {
  /** Stride in both directions. Default 1. */
  stride?: number;
  /** Zero padding. Default 0. */
  padding?: Padding;
}

/** A parameter's declaration: official name, official (PyTorch) shape, initialiser. */
export interface ParamSpec {
  name: string;
  /** Shape in the official layout: conv `[out, in, kh, kw]`, linear `[out, in]`, vectors `[n]`. */
  shape: readonly number[];
  /**
   * `zeros` / `ones`: constants (zero convs, norm gains); `kaiming`: PyTorch's default
   * conv/linear init, uniform(+-1/sqrt(fan_in)) for weights; `bias`: the matching bias init,
   * uniform(+-1/sqrt(fan_in)) with `fanIn` given; `normal`: N(0, std).
   */
  init: 'zeros' | 'ones' | 'kaiming' | 'bias' | 'normal';
  fanIn?: number;
  std?: number;
}

/** Layer-level operations over engine tensors `T`. */
export interface Ops<T = unknown> {
  /** Engine name, e.g. `tfjs-wasm`, `tfjs-cpu`, `onnx-recorder`. */
  readonly engine: string;

  /** Brings a host tensor in (4-D NCHW maps are converted to the engine's layout). */
  input(t: HostTensor<'float32'>): T;
  /** Reads an engine tensor back to the host (4-D maps come back NCHW). */
  read(x: T): Promise<HostTensor<'float32'>>;
  /** Logical shape: NCHW for maps, `[N, L, C]` for tokens, as is otherwise. */
  shape(x: T): number[];

  /** 2-D convolution; `weight` `[out, in, kh, kw]`, optional `bias` `[out]` (official names). */
  conv2d(x: T, weight: string, bias: string | null, options?: Conv2dOptions): T;
  /** `x @ W^T + b` over the last axis; `weight` `[out, in]`, optional `bias` `[out]`. */
  linear(x: T, weight: string, bias: string | null): T;
  /** GroupNorm over a map (PyTorch `nn.GroupNorm`), optional affine `weight`/`bias` `[C]`. */
  groupNorm(x: T, groups: number, weight: string | null, bias: string | null, eps: number): T;
  /** InstanceNorm over a map, per sample and channel, no affine (PyTorch `nn.InstanceNorm2d` defaults). */
  instanceNorm(x: T, eps: number): T;
  /** LayerNorm over the last axis (tokens), affine `weight`/`bias` `[C]`. */
  layerNorm(x: T, weight: string, bias: string, eps: number): T;

  silu(x: T): T;
  /** Exact (erf) GELU, PyTorch's default. */
  gelu(x: T): T;
  /**
   * Scaled dot-product attention with `heads` heads: q `[N, Lq, C]`, k and v `[N, Lk, C]`,
   * C split into heads of C/heads; softmax(q k^T / sqrt(C/heads) + mask) v, heads merged back:
   * `[N, Lq, C]`. The mask is {@link causalMask} with `causal`, none otherwise.
   */
  attention(q: T, k: T, v: T, heads: number, options?: AttentionOptions): T;

  /** Nearest-neighbour 2x upsampling of a map. */
  upsampleNearest2x(x: T): T;
  /** Average pooling of a map (no padding). */
  avgPool2d(x: T, kernel: number, stride: number): T;
  /** Concatenation of maps along channels. */
  concatChannels(xs: T[]): T;
  /** Splits along channels (maps) or the last axis (tokens) into parts of the given sizes. */
  split(x: T, sizes: number[]): T[];
  /** Map `[N, C, H, W]` to tokens `[N, H*W, C]`. */
  toTokens(x: T): T;
  /** Tokens `[N, H*W, C]` back to a map `[N, C, H, W]`. */
  fromTokens(x: T, height: number, width: number): T;

  add(a: T, b: T): T;
  sub(a: T, b: T): T;
  mul(a: T, b: T): T;
  /** `x * s` for a number `s`. */
  scale(x: T, s: number): T;
  /** Adds a per-sample, per-channel vector `v` `[N, C]` to a map `[N, C, H, W]` (ResBlock time embedding). */
  addChannels(x: T, v: T): T;
  clamp(x: T, lo: number, hi: number): T;
  exp(x: T): T;
  abs(x: T): T;
  /** `x + s` for a number `s`. */
  addScalar(x: T, s: number): T;
  /** Mean of every element: a scalar (shape `[]`). */
  mean(x: T): T;
  /** Sum of every element: a scalar (shape `[]`). */
  sum(x: T): T;
}
