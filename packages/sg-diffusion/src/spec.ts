/**
 * Parameter declarations (official state-dict names, PyTorch shapes, initialisers) of the
 * controlled UNet (`model.diffusion_model.*`, openaimodel.UNetModel) and the SG network
 * (`control_model.*`, DiAD `sgn/sgn.py` SemanticGuidedNetwork). Zero-initialised as the official
 * `zero_module` calls: ResBlock `out_layers.3`, transformer `proj_out`, UNet `out.2`, every zero
 * conv, `middle_block_out`, the last hint conv and the nine SFF convs.
 */
import type { ParamSpec } from '@diad/core';
import type { SGNConfig, UNetConfig } from './config.js';
import { unetArch, type AttnArch, type UNetArch } from './architecture.js';

export const UNET_PREFIX = 'model.diffusion_model.';
export const SGN_PREFIX = 'control_model.';

type Specs = ParamSpec[];

function conv(s: Specs, name: string, out: number, inCh: number, k: number, opt: { zero?: boolean; bias?: boolean } = {}): void {
  const fanIn = inCh * k * k;
  s.push({ name: `${name}.weight`, shape: [out, inCh, k, k], init: opt.zero ? 'zeros' : 'kaiming', fanIn });
  if (opt.bias !== false) s.push({ name: `${name}.bias`, shape: [out], init: opt.zero ? 'zeros' : 'bias', fanIn });
}

function linear(s: Specs, name: string, out: number, inCh: number, bias = true): void {
  s.push({ name: `${name}.weight`, shape: [out, inCh], init: 'kaiming', fanIn: inCh });
  if (bias) s.push({ name: `${name}.bias`, shape: [out], init: 'bias', fanIn: inCh });
}

function norm(s: Specs, name: string, ch: number): void {
  s.push({ name: `${name}.weight`, shape: [ch], init: 'ones' });
  s.push({ name: `${name}.bias`, shape: [ch], init: 'zeros' });
}

function timeEmbed(s: Specs, p: string, mc: number, embDim: number): void {
  linear(s, `${p}time_embed.0`, embDim, mc);
  linear(s, `${p}time_embed.2`, embDim, embDim);
}

function resBlock(s: Specs, p: string, inCh: number, outCh: number, embDim: number): void {
  norm(s, `${p}.in_layers.0`, inCh);
  conv(s, `${p}.in_layers.2`, outCh, inCh, 3);
  linear(s, `${p}.emb_layers.1`, outCh, embDim);
  norm(s, `${p}.out_layers.0`, outCh);
  conv(s, `${p}.out_layers.3`, outCh, outCh, 3, { zero: true });
  if (inCh !== outCh) conv(s, `${p}.skip_connection`, outCh, inCh, 1);
}

function transformer(s: Specs, p: string, ch: number, a: AttnArch, contextDim: number, depth: number): void {
  const inner = a.heads * a.dimHead;
  norm(s, `${p}.norm`, ch);
  conv(s, `${p}.proj_in`, inner, ch, 1);
  for (let d = 0; d < depth; d++) {
    const b = `${p}.transformer_blocks.${d}`;
    for (const [attn, kv] of [
      ['attn1', inner],
      ['attn2', contextDim],
    ] as const) {
      if (attn === 'attn2') {
        linear(s, `${b}.ff.net.0.proj`, inner * 8, inner);
        linear(s, `${b}.ff.net.2`, inner, inner * 4);
      }
      linear(s, `${b}.${attn}.to_q`, inner, inner, false);
      linear(s, `${b}.${attn}.to_k`, inner, kv, false);
      linear(s, `${b}.${attn}.to_v`, inner, kv, false);
      linear(s, `${b}.${attn}.to_out.0`, inner, inner);
    }
    for (const n of ['norm1', 'norm2', 'norm3']) norm(s, `${b}.${n}`, inner);
  }
  conv(s, `${p}.proj_out`, ch, inner, 1, { zero: true });
}

function encoder(s: Specs, p: string, c: UNetConfig, l: UNetArch): void {
  timeEmbed(s, p, c.model_channels, l.timeEmbedDim);
  l.input.forEach((b, i) => {
    const q = `${p}input_blocks.${i}`;
    if (b.kind === 'conv') conv(s, `${q}.0`, b.outCh, c.in_channels, 3);
    else if (b.kind === 'down') conv(s, `${q}.0.op`, b.ch, b.ch, 3);
    else {
      resBlock(s, `${q}.0`, b.inCh, b.outCh, l.timeEmbedDim);
      if (b.attn) transformer(s, `${q}.1`, b.outCh, b.attn, c.context_dim, c.transformer_depth);
    }
  });
}

function middle(s: Specs, p: string, c: UNetConfig, l: UNetArch): void {
  resBlock(s, `${p}middle_block.0`, l.midCh, l.midCh, l.timeEmbedDim);
  transformer(s, `${p}middle_block.1`, l.midCh, l.midAttn, c.context_dim, c.transformer_depth);
  resBlock(s, `${p}middle_block.2`, l.midCh, l.midCh, l.timeEmbedDim);
}

/** Parameters of the controlled UNet (`model.diffusion_model.*`), in official order. */
export function unetParamSpec(c: UNetConfig): ParamSpec[] {
  const l = unetArch(c);
  const s: Specs = [];
  encoder(s, UNET_PREFIX, c, l);
  middle(s, UNET_PREFIX, c, l);
  l.output.forEach((b, i) => {
    const q = `${UNET_PREFIX}output_blocks.${i}`;
    resBlock(s, `${q}.0`, b.inCh, b.outCh, l.timeEmbedDim);
    if (b.attn) transformer(s, `${q}.1`, b.outCh, b.attn, c.context_dim, c.transformer_depth);
    if (b.up) conv(s, `${q}.${b.attn ? 2 : 1}.conv`, b.outCh, b.outCh, 3);
  });
  norm(s, `${UNET_PREFIX}out.0`, c.model_channels);
  conv(s, `${UNET_PREFIX}out.2`, c.out_channels, c.model_channels, 3, { zero: true });
  return s;
}

/** Input-block indices of the SFF block: sources (outs 6, 7, 8) and targets (outs 9, 10, 11). */
export const SFF_SOURCES = [6, 7, 8] as const;
export const SFF_TARGETS = [9, 10, 11] as const;

/**
 * Checks the SG network config: the SFF block needs the 4-level, 2-ResBlock structure
 * (13 control tensors, outs 6-8 at twice the resolution of outs 9-11).
 * @throws Error naming the offending fields.
 */
export function checkSgnConfig(c: SGNConfig): void {
  if (c.sff && (c.unet.channel_mult.length !== 4 || c.unet.num_res_blocks !== 2)) {
    throw new Error(
      `SFF block needs channel_mult of length 4 and num_res_blocks 2 (13 control tensors); got channel_mult [${c.unet.channel_mult.join(', ')}], num_res_blocks ${c.unet.num_res_blocks}. Set sff: false for a plain ControlNet.`,
    );
  }
}

/** Parameters of the SG network (`control_model.*`), in official order. */
export function sgnParamSpec(c: SGNConfig): ParamSpec[] {
  checkSgnConfig(c);
  const u = c.unet;
  const l = unetArch(u);
  const p = SGN_PREFIX;
  const s: Specs = [];
  encoder(s, p, u, l);
  l.inputChans.forEach((ch, i) => {
    conv(s, `${p}zero_convs.${i}.0`, ch, ch, 1, { zero: true });
  });
  const w = c.hint_widths;
  const chain = [c.hint_channels, ...w, u.model_channels];
  for (let i = 0; i < 8; i++) conv(s, `${p}input_hint_block.${2 * i}`, chain[i + 1], chain[i], 3, { zero: i === 7 });
  middle(s, p, u, l);
  conv(s, `${p}middle_block_out.0`, l.midCh, l.midCh, 1, { zero: true });
  if (c.sff) {
    for (let j = 1; j <= 3; j++)
      for (let k = 1; k <= 3; k++) {
        conv(s, `${p}down${j}${k}.0`, l.inputChans[SFF_TARGETS[k - 1]], l.inputChans[SFF_SOURCES[j - 1]], 3, { zero: true, bias: false });
      }
  }
  return s;
}

/** Total number of scalars of a parameter list. */
export function parameterCount(specs: readonly ParamSpec[]): number {
  return specs.reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
}
