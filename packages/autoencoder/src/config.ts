/**
 * Configuration of the LDM AutoencoderKL, in the official format: the `ddconfig` dictionary of
 * `ldm/models/autoencoder.py` (`AutoencoderKL(ddconfig, lossconfig, embed_dim)`) plus `embed_dim`,
 * as in DiAD's `models/autoencoder_kl_32x32x4.yaml` and the reference fixture JSON.
 */
import { z } from 'zod';

/** The `ddconfig` of `ldm/modules/diffusionmodules/model.py` Encoder/Decoder. */
export interface DDConfig {
  /** Encoder emits `2 * z_channels` (mean and log-variance); the official AutoencoderKL asserts it. */
  double_z: boolean;
  /** Channels of the latent before `quant_conv` / after `post_quant_conv`. */
  z_channels: number;
  /** Nominal image size; only `attn_resolutions` are compared against it (inputs may be any multiple of the downsampling factor). */
  resolution: number;
  in_channels: number;
  out_ch: number;
  /** Base width; every level's width `ch * ch_mult[i]` must be a multiple of 32 (GroupNorm with 32 groups). */
  ch: number;
  /** Width multiplier per level; `len(ch_mult) - 1` downsamplings, so the factor is `2^(len - 1)`. */
  ch_mult: number[];
  num_res_blocks: number;
  /** Feature-map sizes (relative to `resolution`) at which an AttnBlock follows each ResnetBlock. */
  attn_resolutions: number[];
  /** Dropout inside ResnetBlocks; must be 0 here (the official configs use 0). */
  dropout: number;
}

/** An AutoencoderKL: `ddconfig` plus `embed_dim` (latent channels after `quant_conv`). */
export interface AutoencoderConfig {
  ddconfig: DDConfig;
  embed_dim: number;
}

const ddconfigSchema = z.object({
  double_z: z.boolean().default(true),
  z_channels: z.number().int().positive(),
  resolution: z.number().int().positive(),
  in_channels: z.number().int().positive(),
  out_ch: z.number().int().positive(),
  ch: z.number().int().positive(),
  ch_mult: z.array(z.number().int().positive()).min(1),
  num_res_blocks: z.number().int().positive(),
  attn_resolutions: z.array(z.number().int().positive()).default([]),
  dropout: z.number().min(0).max(0, 'dropout must be 0 (training with dropout is not supported)').default(0),
});

const configSchema = z.object({ ddconfig: ddconfigSchema, embed_dim: z.number().int().positive() });

/** Number of GroupNorm groups of the official `Normalize` (and its eps). */
export const NORM_GROUPS = 32;
export const NORM_EPS = 1e-6;

/**
 * Validates a config object (e.g. a fixture JSON, or `model.params` of an official YAML converted
 * to JSON). Extra keys (`scale_factor`, `description`, ...) are ignored.
 * @param source a name for error messages (file path).
 * @throws Error naming the source and the offending field: wrong types, dropout != 0, `double_z`
 *   false (the official AutoencoderKL asserts it), or a level width not divisible by 32.
 */
export function parseAutoencoderConfig(value: unknown, source = 'autoencoder config'): AutoencoderConfig {
  const r = configSchema.safeParse(value);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.') || '<root>'}: ${i.message}`).join('; ');
    throw new Error(`${source}: invalid AutoencoderKL config (${msg}); expected {ddconfig: {...}, embed_dim}`);
  }
  const cfg = r.data as AutoencoderConfig;
  const d = cfg.ddconfig;
  if (!d.double_z) throw new Error(`${source}: ddconfig.double_z must be true (AutoencoderKL needs mean and log-variance)`);
  for (const m of [1, ...d.ch_mult]) {
    if ((d.ch * m) % NORM_GROUPS !== 0) {
      throw new Error(`${source}: level width ch*mult = ${d.ch}*${m} is not a multiple of ${NORM_GROUPS} (GroupNorm groups); change ch or ch_mult`);
    }
  }
  return cfg;
}

/** Spatial downsampling factor image -> latent: `2^(len(ch_mult) - 1)`. */
export function downsampleFactor(cfg: AutoencoderConfig): number {
  return 2 ** (cfg.ddconfig.ch_mult.length - 1);
}

/** The official latent scale factor of SD's f=8 KL autoencoder (`scale_factor` in the LDM config). */
export const SCALE_FACTOR = 0.18215;

/**
 * Presets. `kl-f8`: the autoencoder DiAD uses (SD 1.x first stage, `autoencoder_kl_32x32x4.yaml`,
 * 83.65 M parameters). `tiny`: a CPU-trainable f=8 model for 128 px images (ch 32, one ResnetBlock
 * per level), the size of the reference fixture.
 */
export const PRESETS: Record<'kl-f8' | 'tiny', AutoencoderConfig> = {
  'kl-f8': {
    embed_dim: 4,
    ddconfig: {
      double_z: true,
      z_channels: 4,
      resolution: 256,
      in_channels: 3,
      out_ch: 3,
      ch: 128,
      ch_mult: [1, 2, 4, 4],
      num_res_blocks: 2,
      attn_resolutions: [],
      dropout: 0,
    },
  },
  tiny: {
    embed_dim: 4,
    ddconfig: {
      double_z: true,
      z_channels: 4,
      resolution: 128,
      in_channels: 3,
      out_ch: 3,
      ch: 32,
      ch_mult: [1, 2, 4, 4],
      num_res_blocks: 1,
      attn_resolutions: [],
      dropout: 0,
    },
  },
};
