/**
 * The block structure of openaimodel.UNetModel (`ldm/modules/diffusionmodules/openaimodel.py`,
 * `use_spatial_transformer`, `legacy: false`), derived once from a config and shared by the
 * parameter specs and the forward passes, so names and widths cannot drift apart.
 */
import type { UNetConfig } from './config.js';

/** Attention shape of a SpatialTransformer: heads x dimHead = inner width. */
export interface AttnArch {
  heads: number;
  dimHead: number;
}

/** One `input_blocks.{i}` entry. */
export type InputBlock = { kind: 'conv'; outCh: number } | { kind: 'res'; inCh: number; outCh: number; attn: AttnArch | null } | { kind: 'down'; ch: number };

/** One `output_blocks.{i}` entry: ResBlock (skip concatenated), optional transformer, optional upsample. */
export interface OutputBlock {
  inCh: number;
  outCh: number;
  attn: AttnArch | null;
  up: boolean;
}

export interface UNetArch {
  timeEmbedDim: number;
  input: InputBlock[];
  /** Width of each input block's output (the skips, and the SG network's control tensors). */
  inputChans: number[];
  /** Width of the middle block. */
  midCh: number;
  midAttn: AttnArch;
  output: OutputBlock[];
}

function attnFor(c: UNetConfig, ch: number): AttnArch {
  if (c.num_head_channels === -1) return { heads: c.num_heads, dimHead: Math.floor(ch / c.num_heads) };
  return { heads: Math.floor(ch / c.num_head_channels), dimHead: c.num_head_channels };
}

/** Derives the block architecture; heads follow `num_heads` or `num_head_channels` as the official code. */
export function unetArch(c: UNetConfig): UNetArch {
  const mc = c.model_channels;
  const input: InputBlock[] = [{ kind: 'conv', outCh: mc }];
  const chans = [mc];
  let ch = mc;
  let ds = 1;
  c.channel_mult.forEach((mult, level) => {
    for (let r = 0; r < c.num_res_blocks; r++) {
      const outCh = mult * mc;
      input.push({ kind: 'res', inCh: ch, outCh, attn: c.attention_resolutions.includes(ds) ? attnFor(c, outCh) : null });
      ch = outCh;
      chans.push(ch);
    }
    if (level !== c.channel_mult.length - 1) {
      input.push({ kind: 'down', ch });
      chans.push(ch);
      ds *= 2;
    }
  });
  const midCh = ch;
  const stack = [...chans];
  const output: OutputBlock[] = [];
  for (let level = c.channel_mult.length - 1; level >= 0; level--) {
    const mult = c.channel_mult[level];
    for (let i = 0; i <= c.num_res_blocks; i++) {
      const ich = stack.pop()!;
      const outCh = mc * mult;
      output.push({
        inCh: ch + ich,
        outCh,
        attn: c.attention_resolutions.includes(ds) ? attnFor(c, outCh) : null,
        up: level > 0 && i === c.num_res_blocks,
      });
      ch = outCh;
      if (level > 0 && i === c.num_res_blocks) ds /= 2;
    }
  }
  return { timeEmbedDim: mc * 4, input, inputChans: chans, midCh, midAttn: attnFor(c, midCh), output };
}
