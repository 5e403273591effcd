/**
 * The LDM AutoencoderKL forward pass, written once against `Ops` (engine-neutral).
 * Follows `ldm/modules/diffusionmodules/model.py` (Encoder, Decoder, ResnetBlock, AttnBlock,
 * Downsample, Upsample) and `ldm/models/autoencoder.py` (AutoencoderKL.encode/decode).
 * Maps are logically NCHW; parameters are looked up by official state-dict names.
 */
import type { Ops } from '@diad/core';
import { downsampleFactor, NORM_EPS, NORM_GROUPS, type AutoencoderConfig } from './config.js';
import { decoderArch, encoderArch, type CoderArch } from './architecture.js';
import { DEFAULT_PREFIX } from './params.js';

/** `Normalize` (GroupNorm, 32 groups, eps 1e-6, affine). */
function normalize<T>(ops: Ops<T>, x: T, name: string): T {
  return ops.groupNorm(x, NORM_GROUPS, `${name}.weight`, `${name}.bias`, NORM_EPS);
}

function conv<T>(ops: Ops<T>, x: T, name: string, padding: number | [number, number, number, number] = 0, stride = 1): T {
  return ops.conv2d(x, `${name}.weight`, `${name}.bias`, { padding, stride });
}

/**
 * `ResnetBlock` without time embedding (temb_channels 0, dropout 0):
 * `shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))))))`, shortcut a 1x1 `nin_shortcut` when
 * the width changes.
 */
export function resnetBlock<T>(ops: Ops<T>, x: T, name: string, inCh: number, outCh: number): T {
  let h = ops.silu(normalize(ops, x, `${name}.norm1`));
  h = conv(ops, h, `${name}.conv1`, 1);
  h = ops.silu(normalize(ops, h, `${name}.norm2`));
  h = conv(ops, h, `${name}.conv2`, 1);
  const skip = inCh === outCh ? x : conv(ops, x, `${name}.nin_shortcut`);
  return ops.add(skip, h);
}

/**
 * `AttnBlock`: single-head self-attention over the H*W positions of a map, q/k/v/proj_out as 1x1
 * convs, softmax(q k^T / sqrt(C)) v, residual: `x + proj_out(attn)`.
 */
export function attnBlock<T>(ops: Ops<T>, x: T, name: string): T {
  const [, , height, width] = ops.shape(x);
  const h = normalize(ops, x, `${name}.norm`);
  const q = ops.toTokens(conv(ops, h, `${name}.q`));
  const k = ops.toTokens(conv(ops, h, `${name}.k`));
  const v = ops.toTokens(conv(ops, h, `${name}.v`));
  const a = ops.fromTokens(ops.attention(q, k, v, 1), height, width);
  return ops.add(x, conv(ops, a, `${name}.proj_out`));
}

/** `Downsample` with conv: zero padding (left 0, right 1, top 0, bottom 1), then a stride-2 3x3 conv. */
export function downsample<T>(ops: Ops<T>, x: T, name: string): T {
  return conv(ops, x, `${name}.conv`, [0, 1, 0, 1], 2);
}

/** `Upsample` with conv: nearest-neighbour x2, then a 3x3 conv (padding 1). */
export function upsample<T>(ops: Ops<T>, x: T, name: string): T {
  return conv(ops, ops.upsampleNearest2x(x), `${name}.conv`, 1);
}

function midBlock<T>(ops: Ops<T>, x: T, name: string, c: number): T {
  let h = resnetBlock(ops, x, `${name}.block_1`, c, c);
  h = attnBlock(ops, h, `${name}.attn_1`);
  return resnetBlock(ops, h, `${name}.block_2`, c, c);
}

function runLevels<T>(ops: Ops<T>, h: T, p: string, arch: CoderArch, kind: 'down' | 'up'): T {
  for (const level of arch.levels) {
    for (const b of level.blocks) {
      h = resnetBlock(ops, h, `${p}${b.path}`, b.inCh, b.outCh);
      if (b.attn) h = attnBlock(ops, h, `${p}${b.attn}`);
    }
    if (level.resample) h = kind === 'down' ? downsample(ops, h, `${p}${level.resample}`) : upsample(ops, h, `${p}${level.resample}`);
  }
  return h;
}

function checkSpatial(shape: number[], factor: number, what: string): void {
  if (shape.length !== 4 || shape[2] % factor !== 0 || shape[3] % factor !== 0) {
    throw new Error(`AutoencoderKL: ${what} of shape [${shape.join(', ')}] must be [N, C, H, W] with H and W multiples of ${factor}`);
  }
}

/**
 * `Encoder` followed by `quant_conv`: images `[N, in_channels, H, W]` to the posterior moments
 * `[N, 2*embed_dim, H/f, W/f]` (mean channels first, then log-variance, unclamped).
 * @param prefix state-dict prefix of the parameters (default `first_stage_model.`).
 * @throws Error when the input is not 4-D, has the wrong channels, or H/W are not multiples of f.
 */
export function encodeMoments<T>(ops: Ops<T>, cfg: AutoencoderConfig, x: T, prefix = DEFAULT_PREFIX): T {
  const d = cfg.ddconfig;
  const shape = ops.shape(x);
  checkSpatial(shape, downsampleFactor(cfg), 'input image');
  if (shape[1] !== d.in_channels) throw new Error(`AutoencoderKL: input has ${shape[1]} channels, the config expects in_channels = ${d.in_channels}`);
  const arch = encoderArch(cfg);
  let h = conv(ops, x, `${prefix}encoder.conv_in`, 1);
  h = runLevels(ops, h, prefix, arch, 'down');
  h = midBlock(ops, h, `${prefix}encoder.mid`, arch.midCh);
  h = ops.silu(normalize(ops, h, `${prefix}encoder.norm_out`));
  h = conv(ops, h, `${prefix}encoder.conv_out`, 1);
  return conv(ops, h, `${prefix}quant_conv`);
}

/**
 * `post_quant_conv` followed by `Decoder`: an unscaled latent `[N, embed_dim, h, w]` to images
 * `[N, out_ch, h*f, w*f]` (no tanh; the official config has `tanh_out` false).
 * @throws Error when the latent is not 4-D or has the wrong channels.
 */
export function decodeLatent<T>(ops: Ops<T>, cfg: AutoencoderConfig, z: T, prefix = DEFAULT_PREFIX): T {
  const shape = ops.shape(z);
  checkSpatial(shape, 1, 'latent');
  if (shape[1] !== cfg.embed_dim) throw new Error(`AutoencoderKL: latent has ${shape[1]} channels, the config expects embed_dim = ${cfg.embed_dim}`);
  const arch = decoderArch(cfg);
  let h = conv(ops, z, `${prefix}post_quant_conv`);
  h = conv(ops, h, `${prefix}decoder.conv_in`, 1);
  h = midBlock(ops, h, `${prefix}decoder.mid`, arch.midCh);
  h = runLevels(ops, h, prefix, arch, 'up');
  h = ops.silu(normalize(ops, h, `${prefix}decoder.norm_out`));
  return conv(ops, h, `${prefix}decoder.conv_out`, 1);
}
