/**
 * Configuration of the controlled UNet and the SG network, with the official field names of
 * `models/diad.yaml` (`unet_config` / `control_stage_config` params), validated with zod.
 */
import { z } from 'zod';

/** The official hint-block widths of `sgn/sgn.py` (`input_hint_block`), before the last conv to model_channels. */
export const OFFICIAL_HINT_WIDTHS = [16, 16, 32, 32, 96, 96, 256] as const;

/** The factors the hint block can bring an image down by (`hint_downsample`): 2, 4 or 8. */
export const HINT_DOWNSAMPLES = [2, 4, 8] as const;
const hintDownsample = z.union([z.literal(HINT_DOWNSAMPLES[0]), z.literal(HINT_DOWNSAMPLES[1]), z.literal(HINT_DOWNSAMPLES[2])]).default(8);

/**
 * UNet config (openaimodel.UNetModel params, spatial-transformer variant, `legacy: false`).
 * `num_heads` / `num_head_channels`: set one (the other -1), as in the official code.
 */
export const unetConfigSchema = z
  .object({
    image_size: z.number().int().positive().optional(),
    in_channels: z.number().int().positive(),
    out_channels: z.number().int().positive(),
    model_channels: z.number().int().positive(),
    attention_resolutions: z.array(z.number().int().positive()),
    num_res_blocks: z.number().int().positive(),
    channel_mult: z.array(z.number().int().positive()).min(1),
    num_heads: z.number().int().default(-1),
    num_head_channels: z.number().int().default(-1),
    use_spatial_transformer: z.literal(true).default(true),
    transformer_depth: z.number().int().positive().default(1),
    context_dim: z.number().int().positive(),
    legacy: z.literal(false).default(false),
    use_checkpoint: z.boolean().optional(),
  })
  .passthrough()
  .superRefine((c, ctx) => {
    if (c.num_heads === -1 && c.num_head_channels === -1) {
      ctx.addIssue({ code: 'custom', message: 'set num_heads or num_head_channels (the other -1)' });
    }
    for (const m of c.channel_mult) {
      if ((m * c.model_channels) % 32 !== 0) {
        ctx.addIssue({ code: 'custom', message: `channel width ${m * c.model_channels} is not a multiple of 32 (GroupNorm has 32 groups)` });
      }
    }
  });

export type UNetConfig = z.infer<typeof unetConfigSchema>;

/** SG network config: the UNet config plus the hint input and the SFF switch. */
export const sgnConfigSchema = z.object({
  unet: unetConfigSchema,
  /** Channels of the hint image (3 for RGB). */
  hint_channels: z.number().int().positive().default(3),
  /**
   * Widths of the hint block's first seven convs (strides: `hint_downsample`). The last conv maps to
   * model_channels and is zero-initialised.
   */
  hint_widths: z
    .array(z.number().int().positive())
    .length(7)
    .default([...OFFICIAL_HINT_WIDTHS]),
  /**
   * How much smaller the latent is than the hint image: 8 (official, a kl-f8 autoencoder; stride 2 at
   * convs 3, 5 and 7), 4 (convs 3 and 5; a kl-f4 autoencoder) or 2 (conv 3). Same parameters in all cases.
   */
  hint_downsample: hintDownsample,
  /** Whether the SFF block (DiAD) is present; false gives a plain ControlNet. */
  sff: z.boolean().default(true),
});

export type SGNConfig = z.infer<typeof sgnConfigSchema>;

/** The cross-attention context: a constant (CLIP's empty prompt, computed or from a file) or learned. */
export const contextConfigSchema = z.discriminatedUnion('kind', [
  /** A learned null context `[tokens, context_dim]` (models trained from scratch). */
  z.object({ kind: z.literal('learned'), tokens: z.number().int().positive() }),
  /** A constant tensor `[1 or N, tokens, context_dim]` from a safetensors file (e.g. CLIP's empty-prompt embedding). */
  z.object({ kind: z.literal('file'), path: z.string(), tensor: z.string().default('context') }),
  /**
   * The official conditioning: CLIP ViT-L/14's encoding of the empty prompt `[1, 77, 768]`
   * (`clip.ts`), computed from the text encoder (`cond_stage_model.transformer.*`) of the
   * checkpoint the model starts from. A constant like `file`; whoever builds the model computes it
   * and passes it on as a `file` context (the pipeline keeps it in the run's `context.safetensors`).
   */
  z.object({ kind: z.literal('clip') }),
]);

export type ContextConfig = z.infer<typeof contextConfigSchema>;

/** A whole DiAD denoiser: controlled UNet + SG network + context. */
export const diadConfigSchema = z.object({
  unet: unetConfigSchema,
  hint_channels: z.number().int().positive().default(3),
  hint_widths: z
    .array(z.number().int().positive())
    .length(7)
    .default([...OFFICIAL_HINT_WIDTHS]),
  hint_downsample: hintDownsample,
  sff: z.boolean().default(true),
  /** Official test and train scripts set this true. */
  only_mid_control: z.boolean().default(true),
  context: contextConfigSchema,
});

export type DiadConfig = z.infer<typeof diadConfigSchema>;

/**
 * Parses a free JSON config.
 * @throws Error listing every invalid field, prefixed with `source`.
 */
export function parseDiadConfig(json: unknown, source = 'config'): DiadConfig {
  const r = diadConfigSchema.safeParse(json);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`${source}: invalid DiAD config\n${lines.join('\n')}`);
  }
  return r.data;
}

/** Parses a UNet config (official `unet_config` params). @throws Error listing invalid fields. */
export function parseUNetConfig(json: unknown, source = 'unet_config'): UNetConfig {
  const r = unetConfigSchema.safeParse(json);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`${source}: invalid UNet config\n${lines.join('\n')}`);
  }
  return r.data;
}

/** The SG-network view of a DiAD config. */
export function sgnConfigOf(c: DiadConfig): SGNConfig {
  return { unet: c.unet, hint_channels: c.hint_channels, hint_widths: c.hint_widths, hint_downsample: c.hint_downsample, sff: c.sff };
}

/**
 * Presets. `sd15`: the paper's sizes (`models/diad.yaml`, SD 1.5, 256 px images -> 32x32 latents,
 * CLIP's empty-prompt context 77 x 768). `tiny`: 128 px images -> 16x16 latents, trains on a 2-core
 * CPU: attention only at 8x8 and 4x4 (and the 2x2 middle), a narrower hint block, 4 learned context
 * tokens. Levels 2 and 3 are equally wide (mult 2, 2) as in sd15 (4, 4), which the SFF convs assume.
 */
export const PRESETS = {
  sd15: {
    unet: {
      image_size: 32,
      in_channels: 4,
      out_channels: 4,
      model_channels: 320,
      attention_resolutions: [4, 2, 1],
      num_res_blocks: 2,
      channel_mult: [1, 2, 4, 4],
      num_heads: 8,
      use_spatial_transformer: true,
      transformer_depth: 1,
      context_dim: 768,
      legacy: false,
    },
    hint_channels: 3,
    hint_widths: [...OFFICIAL_HINT_WIDTHS],
    sff: true,
    only_mid_control: true,
    context: { kind: 'clip' },
  },
  tiny: {
    unet: {
      image_size: 16,
      in_channels: 4,
      out_channels: 4,
      model_channels: 32,
      attention_resolutions: [4, 2],
      num_res_blocks: 2,
      channel_mult: [1, 2, 2, 2],
      num_heads: 4,
      use_spatial_transformer: true,
      transformer_depth: 1,
      context_dim: 64,
      legacy: false,
    },
    hint_channels: 3,
    hint_widths: [8, 8, 16, 16, 32, 32, 64],
    sff: true,
    only_mid_control: true,
    context: { kind: 'learned', tokens: 4 },
  },
} as const;

export type PresetName = keyof typeof PRESETS;

/** A preset as a parsed config (a fresh copy). */
export function preset(name: PresetName): DiadConfig {
  const p = PRESETS[name];
  if (!p) throw new Error(`unknown preset "${name}"; known: ${Object.keys(PRESETS).join(', ')}`);
  return parseDiadConfig(JSON.parse(JSON.stringify(p)), `preset ${name}`);
}
