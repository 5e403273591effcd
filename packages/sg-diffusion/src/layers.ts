/**
 * The UNet building blocks written against core's `Ops`, parameters by official name
 * (`ldm/modules/diffusionmodules/openaimodel.py` ResBlock / Downsample / Upsample,
 * `ldm/modules/attention.py` SpatialTransformer / BasicTransformerBlock / CrossAttention / GEGLU,
 * `ldm/modules/diffusionmodules/util.py` timestep_embedding). Maps are logically NCHW.
 */
import { tensor, type HostTensor, type Ops } from '@diad/core';
import type { AttnArch } from './architecture.js';

/** GroupNorm32 of openaimodel (`normalization`): 32 groups, eps 1e-5. */
const RES_NORM_EPS = 1e-5;
/** `Normalize` of attention.py: 32 groups, eps 1e-6. */
const ATTN_NORM_EPS = 1e-6;
/** `nn.LayerNorm` default. */
const LN_EPS = 1e-5;

/**
 * Sinusoidal timestep embedding (`timestep_embedding`, max_period 10000): `[cos(t f), sin(t f)]`
 * with `f_i = exp(-ln(10000) i / half)`, float32 arithmetic as the official code.
 * @param timesteps one integer timestep per batch item.
 * @param dim embedding width (model_channels); an odd width gets a zero last column.
 * @returns `[N, dim]`.
 */
export function timestepEmbedding(timesteps: readonly number[], dim: number): HostTensor<'float32'> {
  const half = Math.floor(dim / 2);
  const f32 = Math.fround;
  const freqs = Array.from({ length: half }, (_, i) => f32(Math.exp(f32(f32(-Math.log(10000) * i) / half))));
  const out = new Float32Array(timesteps.length * dim);
  timesteps.forEach((t, b) => {
    for (let i = 0; i < half; i++) {
      const arg = f32(t * freqs[i]);
      out[b * dim + i] = Math.cos(arg);
      out[b * dim + half + i] = Math.sin(arg);
    }
  });
  return tensor(out, [timesteps.length, dim]);
}

/** `time_embed`: linear, SiLU, linear on `[N, model_channels]`; returns `[N, 4 model_channels]`. */
export function timeEmbed<T>(ops: Ops<T>, prefix: string, tEmb: T): T {
  return ops.linear(
    ops.silu(ops.linear(tEmb, `${prefix}time_embed.0.weight`, `${prefix}time_embed.0.bias`)),
    `${prefix}time_embed.2.weight`,
    `${prefix}time_embed.2.bias`,
  );
}

/** 3x3 conv, padding 1 (`conv_nd(2, ..., 3, padding=1)`). */
export function conv3<T>(ops: Ops<T>, x: T, name: string, stride = 1, bias = true): T {
  return ops.conv2d(x, `${name}.weight`, bias ? `${name}.bias` : null, { stride, padding: 1 });
}

/** 1x1 conv (zero convs, proj_in/out, skip_connection). */
export function conv1<T>(ops: Ops<T>, x: T, name: string): T {
  return ops.conv2d(x, `${name}.weight`, `${name}.bias`);
}

/**
 * ResBlock (no scale-shift norm, no up/down): `skip(x) + out_layers(in_layers(x) + emb_layers(emb))`.
 * @param embAct the SiLU of the time embedding `[N, E]` (the first op of `emb_layers`, shared by all blocks).
 */
export function resBlock<T>(ops: Ops<T>, p: string, x: T, embAct: T, inCh: number, outCh: number): T {
  let h = ops.silu(ops.groupNorm(x, 32, `${p}.in_layers.0.weight`, `${p}.in_layers.0.bias`, RES_NORM_EPS));
  h = conv3(ops, h, `${p}.in_layers.2`);
  h = ops.addChannels(h, ops.linear(embAct, `${p}.emb_layers.1.weight`, `${p}.emb_layers.1.bias`));
  h = ops.silu(ops.groupNorm(h, 32, `${p}.out_layers.0.weight`, `${p}.out_layers.0.bias`, RES_NORM_EPS));
  h = conv3(ops, h, `${p}.out_layers.3`);
  return ops.add(inCh === outCh ? x : conv1(ops, x, `${p}.skip_connection`), h);
}

function crossAttention<T>(ops: Ops<T>, p: string, x: T, context: T, heads: number): T {
  const q = ops.linear(x, `${p}.to_q.weight`, null);
  const k = ops.linear(context, `${p}.to_k.weight`, null);
  const v = ops.linear(context, `${p}.to_v.weight`, null);
  return ops.linear(ops.attention(q, k, v, heads), `${p}.to_out.0.weight`, `${p}.to_out.0.bias`);
}

/**
 * SpatialTransformer (conv proj_in/out, `use_linear` false): GroupNorm (eps 1e-6), proj_in, per
 * BasicTransformerBlock `x += attn1(norm1 x)`, `x += attn2(norm2 x, context)`,
 * `x += ff(norm3 x)` with the GEGLU feed-forward `W2 (a * gelu(g))`, `[a, g] = W1 x`; proj_out; residual.
 * @param context `[N, L, context_dim]`.
 */
export function spatialTransformer<T>(ops: Ops<T>, p: string, x: T, context: T, a: AttnArch, depth: number): T {
  const [, , hgt, wid] = ops.shape(x);
  let h = ops.groupNorm(x, 32, `${p}.norm.weight`, `${p}.norm.bias`, ATTN_NORM_EPS);
  h = ops.toTokens(conv1(ops, h, `${p}.proj_in`));
  const inner = a.heads * a.dimHead;
  for (let d = 0; d < depth; d++) {
    const b = `${p}.transformer_blocks.${d}`;
    const n1 = ops.layerNorm(h, `${b}.norm1.weight`, `${b}.norm1.bias`, LN_EPS);
    h = ops.add(h, crossAttention(ops, `${b}.attn1`, n1, n1, a.heads));
    const n2 = ops.layerNorm(h, `${b}.norm2.weight`, `${b}.norm2.bias`, LN_EPS);
    h = ops.add(h, crossAttention(ops, `${b}.attn2`, n2, context, a.heads));
    const n3 = ops.layerNorm(h, `${b}.norm3.weight`, `${b}.norm3.bias`, LN_EPS);
    const [val, gate] = ops.split(ops.linear(n3, `${b}.ff.net.0.proj.weight`, `${b}.ff.net.0.proj.bias`), [inner * 4, inner * 4]);
    h = ops.add(h, ops.linear(ops.mul(val, ops.gelu(gate)), `${b}.ff.net.2.weight`, `${b}.ff.net.2.bias`));
  }
  return ops.add(x, conv1(ops, ops.fromTokens(h, hgt, wid), `${p}.proj_out`));
}

/** Upsample: nearest 2x then 3x3 conv (`conv_resample`). */
export function upsample<T>(ops: Ops<T>, p: string, x: T): T {
  return conv3(ops, ops.upsampleNearest2x(x), `${p}.conv`);
}
