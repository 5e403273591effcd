/**
 * The module tree of the official Encoder/Decoder (`ldm/modules/diffusionmodules/model.py`),
 * computed once from a config and shared by the forward pass and the parameter declarations, so
 * the two cannot disagree.
 */
import type { AutoencoderConfig } from './config.js';

/** One `ResnetBlock` (and the `AttnBlock` after it, if any). */
export interface ResBlockArch {
  /** Module path without prefix, e.g. `encoder.down.1.block.0`. */
  path: string;
  inCh: number;
  outCh: number;
  /** Path of the AttnBlock that follows, e.g. `encoder.down.1.attn.0`; null when none. */
  attn: string | null;
}

/** One resolution level: its blocks, then an optional resampling conv. */
export interface LevelArch {
  blocks: ResBlockArch[];
  /** Path of `Downsample`/`Upsample` (`encoder.down.0.downsample`), null on the last level. */
  resample: string | null;
  /** Channels at the resampling conv. */
  resampleCh: number;
}

export interface CoderArch {
  /** Levels in execution order (decoder: `up.{n-1}` first, as the official loop runs). */
  levels: LevelArch[];
  /** Width of the middle block. */
  midCh: number;
  /** Width entering `norm_out`/`conv_out`. */
  outCh: number;
}

/** The official Encoder's module tree. */
export function encoderArch(cfg: AutoencoderConfig): CoderArch {
  const d = cfg.ddconfig;
  const n = d.ch_mult.length;
  const inMult = [1, ...d.ch_mult];
  let res = d.resolution;
  let blockIn = d.ch;
  const levels: LevelArch[] = [];
  for (let i = 0; i < n; i++) {
    blockIn = d.ch * inMult[i];
    const blockOut = d.ch * d.ch_mult[i];
    const blocks: ResBlockArch[] = [];
    for (let j = 0; j < d.num_res_blocks; j++) {
      blocks.push({
        path: `encoder.down.${i}.block.${j}`,
        inCh: blockIn,
        outCh: blockOut,
        attn: d.attn_resolutions.includes(res) ? `encoder.down.${i}.attn.${j}` : null,
      });
      blockIn = blockOut;
    }
    const last = i === n - 1;
    levels.push({ blocks, resample: last ? null : `encoder.down.${i}.downsample`, resampleCh: blockIn });
    if (!last) res = Math.floor(res / 2);
  }
  return { levels, midCh: blockIn, outCh: blockIn };
}

/** The official Decoder's module tree (levels in execution order: highest index first). */
export function decoderArch(cfg: AutoencoderConfig): CoderArch {
  const d = cfg.ddconfig;
  const n = d.ch_mult.length;
  let blockIn = d.ch * d.ch_mult[n - 1];
  const midCh = blockIn;
  let res = Math.floor(d.resolution / 2 ** (n - 1));
  const levels: LevelArch[] = [];
  for (let i = n - 1; i >= 0; i--) {
    const blockOut = d.ch * d.ch_mult[i];
    const blocks: ResBlockArch[] = [];
    for (let j = 0; j < d.num_res_blocks + 1; j++) {
      blocks.push({
        path: `decoder.up.${i}.block.${j}`,
        inCh: blockIn,
        outCh: blockOut,
        attn: d.attn_resolutions.includes(res) ? `decoder.up.${i}.attn.${j}` : null,
      });
      blockIn = blockOut;
    }
    levels.push({ blocks, resample: i === 0 ? null : `decoder.up.${i}.upsample`, resampleCh: blockIn });
    if (i !== 0) res *= 2;
  }
  return { levels, midCh, outCh: blockIn };
}
