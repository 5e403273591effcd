import { Rng, tensor } from '@diad/core';
import { parseDiadConfig, type DiadConfig } from '../src/config.js';

/** A very small config (8x8 latents, 64 px hints) so training tests run in seconds. */
export function microConfig(): DiadConfig {
  return parseDiadConfig({
    unet: {
      in_channels: 4,
      out_channels: 4,
      model_channels: 32,
      attention_resolutions: [4],
      num_res_blocks: 2,
      channel_mult: [1, 1, 1, 1],
      num_heads: 2,
      context_dim: 16,
    },
    hint_widths: [4, 4, 8, 8, 8, 8, 16],
    context: { kind: 'learned', tokens: 2 },
  });
}

/** Random latents [n, 4, 8, 8] and hints [n, 3, 64, 64]. */
export function microBatch(n: number, seed: number) {
  const r = new Rng(seed);
  return {
    latents: tensor(r.normals(n * 4 * 64), [n, 4, 8, 8], 'NCHW'),
    hint: tensor(r.normals(n * 3 * 64 * 64), [n, 3, 64, 64], 'NCHW'),
  };
}
