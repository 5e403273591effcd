import { parseAutoencoderConfig } from '../src/config.js';

/** f=2, 16 px: the smallest AutoencoderKL with every block kind (attention at the given resolutions; default 8 px). */
export const microConfig = (attnResolutions: number[] = [8]) =>
  parseAutoencoderConfig({
    ddconfig: {
      double_z: true,
      z_channels: 4,
      resolution: 16,
      in_channels: 3,
      out_ch: 3,
      ch: 32,
      ch_mult: [1, 1],
      num_res_blocks: 1,
      attn_resolutions: attnResolutions,
      dropout: 0,
    },
    embed_dim: 4,
  });
