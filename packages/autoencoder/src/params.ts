/**
 * Parameter declarations of the AutoencoderKL: official state-dict names
 * (`first_stage_model.encoder.down.0.block.0.conv1.weight`, ...), official shapes and PyTorch's
 * default initialisation (`nn.Conv2d`: weight and bias uniform(+-1/sqrt(fan_in));
 * `nn.GroupNorm`: weight 1, bias 0).
 */
import type { ParamSpec } from '@diad/core';
import type { AutoencoderConfig } from './config.js';
import { decoderArch, encoderArch, type CoderArch, type ResBlockArch } from './architecture.js';

/** The state-dict prefix of the first stage inside a LatentDiffusion/ControlLDM checkpoint. */
export const DEFAULT_PREFIX = 'first_stage_model.';

function conv(out: ParamSpec[], name: string, cout: number, cin: number, k: number): void {
  const fanIn = cin * k * k;
  out.push({ name: `${name}.weight`, shape: [cout, cin, k, k], init: 'kaiming', fanIn });
  out.push({ name: `${name}.bias`, shape: [cout], init: 'bias', fanIn });
}

function norm(out: ParamSpec[], name: string, c: number): void {
  out.push({ name: `${name}.weight`, shape: [c], init: 'ones' });
  out.push({ name: `${name}.bias`, shape: [c], init: 'zeros' });
}

function resBlock(out: ParamSpec[], p: string, b: ResBlockArch): void {
  const name = `${p}${b.path}`;
  norm(out, `${name}.norm1`, b.inCh);
  conv(out, `${name}.conv1`, b.outCh, b.inCh, 3);
  norm(out, `${name}.norm2`, b.outCh);
  conv(out, `${name}.conv2`, b.outCh, b.outCh, 3);
  if (b.inCh !== b.outCh) conv(out, `${name}.nin_shortcut`, b.outCh, b.inCh, 1);
}

function attnBlock(out: ParamSpec[], name: string, c: number): void {
  norm(out, `${name}.norm`, c);
  for (const m of ['q', 'k', 'v', 'proj_out']) conv(out, `${name}.${m}`, c, c, 1);
}

function mid(out: ParamSpec[], name: string, c: number): void {
  const block = (path: string): ResBlockArch => ({ path, inCh: c, outCh: c, attn: null });
  resBlock(out, '', block(`${name}.block_1`));
  attnBlock(out, `${name}.attn_1`, c);
  resBlock(out, '', block(`${name}.block_2`));
}

function levels(out: ParamSpec[], p: string, arch: CoderArch): void {
  for (const level of arch.levels) {
    for (const b of level.blocks) {
      resBlock(out, p, b);
      if (b.attn) attnBlock(out, `${p}${b.attn}`, b.outCh);
    }
    if (level.resample) conv(out, `${p}${level.resample}.conv`, level.resampleCh, level.resampleCh, 3);
  }
}

/**
 * All parameters of an AutoencoderKL, in the official module order.
 * @param cfg a validated config (see `parseAutoencoderConfig`).
 * @param prefix prepended to every name; `first_stage_model.` (default) as in DiAD/ControlNet
 *   checkpoints, `''` for a standalone AutoencoderKL state dict.
 */
export function paramSpec(cfg: AutoencoderConfig, prefix = DEFAULT_PREFIX): ParamSpec[] {
  const d = cfg.ddconfig;
  const out: ParamSpec[] = [];
  const enc = encoderArch(cfg);
  conv(out, `${prefix}encoder.conv_in`, d.ch, d.in_channels, 3);
  levels(out, prefix, enc);
  mid(out, `${prefix}encoder.mid`, enc.midCh);
  norm(out, `${prefix}encoder.norm_out`, enc.outCh);
  conv(out, `${prefix}encoder.conv_out`, 2 * d.z_channels, enc.outCh, 3);

  const dec = decoderArch(cfg);
  conv(out, `${prefix}decoder.conv_in`, dec.midCh, d.z_channels, 3);
  mid(out, `${prefix}decoder.mid`, dec.midCh);
  levels(out, prefix, dec);
  norm(out, `${prefix}decoder.norm_out`, dec.outCh);
  conv(out, `${prefix}decoder.conv_out`, d.out_ch, dec.outCh, 3);

  conv(out, `${prefix}quant_conv`, 2 * cfg.embed_dim, 2 * d.z_channels, 1);
  conv(out, `${prefix}post_quant_conv`, d.z_channels, cfg.embed_dim, 1);
  return out;
}

/** Total number of scalar parameters of a spec list. */
export function countParams(specs: readonly ParamSpec[]): number {
  return specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}
