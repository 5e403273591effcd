/**
 * The resolved run configuration: everything that decides what a run computes. It is written to
 * `runs/NAME/config.json`, hashed, and compared on resume, so a run folder is never continued with
 * different settings. Every stage is chosen here (autoencoder sizes, reconstructor sizes or an
 * `--init` checkpoint, feature extractor bundled or ONNX), which is what ablations need.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

const stage = z.object({
  /** Optimiser steps of the stage (0 skips it, e.g. when `--init` provides its weights). */
  steps: z.number().int().min(0),
  batchSize: z.number().int().min(1),
  /** AdamW learning rate. */
  lr: z.number().positive(),
  /** AdamW betas; default [0.9, 0.999] (torch's). */
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).optional(),
  /** AdamW decoupled weight decay; default 0.01 (torch's). */
  weightDecay: z.number().min(0).optional(),
  /** Save a checkpoint (and the stage state) every this many steps, and at the end. */
  checkpointEvery: z.number().int().min(1),
});
export type StageConfig = z.infer<typeof stage>;

const featureExtractor = z.discriminatedUnion('kind', [
  /** A backbone bundled with @diad/feature-extractor, by name (`default` = its chosen default). */
  z.object({ kind: z.literal('bundled'), name: z.string().min(1) }),
  /** A user-supplied ONNX file with the stride 4/8/16 outputs (see @diad/feature-extractor README). */
  z.object({ kind: z.literal('onnx'), path: z.string().min(1) }),
]);
export type FeatureExtractorConfig = z.infer<typeof featureExtractor>;

export const runConfigSchema = z
  .object({
    version: z.literal(1),
    preset: z.string(),
    seed: z.number().int(),
    data: z.object({
      /** Dataset roots (absolute paths; MVTec AD / VisA / plain layouts). */
      roots: z.array(z.string().min(1)).min(1),
      /** Classes to use; null = every class found under the roots. */
      classes: z.array(z.string().min(1)).nullable(),
      /** Side of the square model input in pixels (images are resized to it). */
      imageSize: z.number().int().min(32),
      /** Fraction of each class's train images held out as the validation split (never from test). */
      validationFraction: z.number().min(0).max(0.5),
      /** Cap on train images per class (before the split); null = all. */
      maxTrainPerClass: z.number().int().min(1).nullable(),
      /** Cap on test images per class; null = all. */
      maxTestPerClass: z.number().int().min(1).nullable(),
    }),
    models: z.object({
      /**
       * AutoencoderKL in the official format (`ddconfig` + `embed_dim`, as
       * `models/autoencoder_kl_32x32x4.yaml`); validated by @diad/autoencoder when the model is built.
       */
      autoencoder: z.object({ ddconfig: z.record(z.unknown()), embed_dim: z.number().int().positive() }).passthrough(),
      /** KL weight of the autoencoder loss (official 1e-6). */
      klWeight: z.number().min(0),
      /**
       * The DiAD denoiser (controlled UNet + SG network + context) in @diad/sg-diffusion's format
       * (official `unet_config` names); validated by @diad/sg-diffusion when the model is built.
       */
      diad: z.record(z.unknown()),
      /** A converted official checkpoint (safetensors) that replaces stages 1-2; null = train them. */
      init: z.string().nullable(),
    }),
    stages: z.object({
      /**
       * Stage 1: AutoencoderKL (L1 + KL). `crop`: train on random square crops of this side (a
       * multiple of 8; the model is convolutional, so it then runs on whole images), which makes
       * a step (imageSize/crop)^2 times cheaper; null = whole images.
       */
      autoencoder: stage.extend({ crop: z.number().int().min(8).multipleOf(8).nullable() }),
      /** Stage 2: plain latent-diffusion UNet on the normal latents (stands in for SD pretraining). */
      diffusion: stage,
      /** Stage 3: SG network + SFF + UNet decoder, UNet encoder frozen (paper Sec. 3.2). */
      sg: stage,
    }),
    ddim: z.object({
      /** Timestep the latent is noised to before denoising (official 999; a CPU preset uses less). */
      tStart: z.number().int().min(1).max(999),
      steps: z.number().int().min(1),
      eta: z.number().min(0),
      schedule: z.enum(['official', 'partial']),
    }),
    featureExtractor,
    anomalyMap: z.object({
      /** Gaussian blur sigma in pixels (scipy defaults otherwise; official run 5). */
      sigma: z.number().min(0),
      combine: z.enum(['add', 'mul']),
    }),
    threshold: z.object({
      /**
       * How `predict` decides: `fpr` = the score quantile of the normal validation images giving
       * `targetFpr` false positives among them (F1-max needs defective images, which a validation
       * split carved from normal train images does not have).
       */
      mode: z.literal('fpr'),
      targetFpr: z.number().min(0).max(1),
    }),
    /** Batch size of test-time reconstruction and feature extraction. */
    testBatchSize: z.number().int().min(1),
    /**
     * Validation during `fit` (normal validation images + a synthesised defect on a copy of each):
     * scored every `every` steps of the SG stage (a multiple of its `checkpointEvery`; 0 = only at
     * the end), keeping the best checkpoint by the selection rule (pipeline/validate.ts). Then the
     * chosen checkpoint is scored with each DDIM start in `tStarts`, and the best becomes the run's
     * inference `tStart` (recorded in `validation.json`). Absent in runs made before it existed:
     * validated at the end only.
     */
    validation: z.object({ every: z.number().int().min(0), tStarts: z.array(z.number().int().min(1).max(999)).optional() }).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const every = c.validation?.every ?? 0;
    if (every > 0 && every % c.stages.sg.checkpointEvery !== 0) {
      ctx.addIssue({ code: 'custom', path: ['validation', 'every'], message: `${every} is not a multiple of stages.sg.checkpointEvery (${c.stages.sg.checkpointEvery}); validation runs at checkpoints (fix: a --checkpoint-every that divides ${every})` });
    }
  });

export type RunConfig = z.infer<typeof runConfigSchema>;

/** The fields a preset sets; data roots and classes come from the command line. */
export type Preset = Omit<RunConfig, 'data' | 'models'> & {
  data: Omit<RunConfig['data'], 'roots' | 'classes'>;
  models: Omit<RunConfig['models'], 'init'>;
};

const tinyAutoencoder = {
  embed_dim: 4,
  ddconfig: { double_z: true, z_channels: 4, resolution: 128, in_channels: 3, out_ch: 3, ch: 32, ch_mult: [1, 2, 4, 4], num_res_blocks: 1, attn_resolutions: [], dropout: 0 },
};
const tinyDiad = {
  unet: {
    image_size: 16, in_channels: 4, out_channels: 4, model_channels: 32, attention_resolutions: [4, 2], num_res_blocks: 2,
    channel_mult: [1, 2, 2, 2], num_heads: 4, use_spatial_transformer: true, transformer_depth: 1, context_dim: 64, legacy: false,
  },
  hint_channels: 3,
  hint_widths: [8, 8, 16, 16, 32, 32, 64],
  sff: true,
  only_mid_control: true,
  context: { kind: 'learned', tokens: 4 },
};

const common = {
  version: 1 as const,
  seed: 0,
  featureExtractor: { kind: 'bundled' as const, name: 'default' },
  anomalyMap: { sigma: 4, combine: 'add' as const },
  threshold: { mode: 'fpr' as const, targetFpr: 0.05 },
};

/**
 * `cpu`: the best model that trains in at most 60 minutes of `diad fit` on 2 cores for six classes:
 * 128 px with a kl-f4 autoencoder (latents 32x32x4: f=8 at 128 px cannot carry fine textures such as
 * woven fabric), the tiny UNet widths at that latent size, ResNet-50 layer1-3 features (the paper's).
 */
const cpuAutoencoder = {
  embed_dim: 4,
  ddconfig: { ...tinyAutoencoder.ddconfig, ch_mult: [1, 2, 4] },
};

/**
 * Presets. `tiny`: 128 px, sizes that train on a 2-core CPU (the demo's preset); `ci`: the same
 * architecture family at 64 px with a handful of steps and images, so CI exercises the whole path
 * in a few minutes (its metrics mean nothing).
 */
export const PRESETS: Record<string, Preset> = {
  tiny: {
    ...common,
    preset: 'tiny',
    data: { imageSize: 128, validationFraction: 0.1, maxTrainPerClass: null, maxTestPerClass: null },
    models: { autoencoder: tinyAutoencoder, klWeight: 1e-6, diad: tinyDiad },
    stages: {
      // Step counts for the ort engine (about 0.16 / 0.18 / 0.26 s per step on 2 cores): 20x, 12.5x
      // and 10x the 80 steps the tfjs engine could afford in about the same time.
      // The autoencoder uses the official autoencoder optimizer's betas (0.5, 0.9) and no weight
      // decay (LDM `autoencoder.py`). Chosen on the demo's validation images (never the test split):
      // after 1000 steps, L1 0.335 with AdamW (0.9, 0.999, wd 0.01) at lr 4e-4; 0.283 with (0.5, 0.9)
      // at 4e-4; 0.255 at 8e-4; 0.345 at 1.6e-3.
      autoencoder: { steps: 1600, batchSize: 4, lr: 8e-4, betas: [0.5, 0.9], weightDecay: 0, checkpointEvery: 100, crop: 32 },
      diffusion: { steps: 1000, batchSize: 8, lr: 4e-4, checkpointEvery: 100 },
      sg: { steps: 800, batchSize: 8, lr: 2e-4, checkpointEvery: 100 },
    },
    ddim: { tStart: 500, steps: 10, eta: 0, schedule: 'partial' },
    testBatchSize: 8,
  },
  cpu: {
    ...common,
    preset: 'cpu',
    featureExtractor: { kind: 'bundled', name: 'resnet50' },
    data: { imageSize: 128, validationFraction: 0.1, maxTrainPerClass: null, maxTestPerClass: null },
    models: {
      autoencoder: cpuAutoencoder,
      klWeight: 1e-6,
      diad: { ...tinyDiad, unet: { ...tinyDiad.unet, image_size: 32, attention_resolutions: [4, 2] }, hint_downsample: 4 },
    },
    stages: {
      autoencoder: { steps: 4000, batchSize: 8, lr: 8e-4, betas: [0.5, 0.9], weightDecay: 0, checkpointEvery: 200, crop: 32 },
      diffusion: { steps: 2000, batchSize: 8, lr: 4e-4, checkpointEvery: 200 },
      sg: { steps: 1600, batchSize: 8, lr: 2e-4, checkpointEvery: 200 },
    },
    ddim: { tStart: 300, steps: 10, eta: 0, schedule: 'partial' },
    testBatchSize: 8,
    // Measured on the six shared classes (commit 6e34330, validation every 400, DDIM starts 150/300/500):
    // fit 63 min 15 s, the validation passes 438 s of it; the SG step-1600 checkpoint won (rule
    // value 89.6 vs 89.2 / 89.35 / 89.5 at 400 / 800 / 1200) and t=500 won (89.9 vs 89.6 at 300,
    // 85.6 at 150). Validating every 800 and sweeping 300/500 makes the same choices with three
    // passes fewer (205 s), about 60 min in all.
    validation: { every: 800, tStarts: [500] },
  },
  ci: {
    ...common,
    preset: 'ci',
    data: { imageSize: 64, validationFraction: 0.2, maxTrainPerClass: 10, maxTestPerClass: 6 },
    models: {
      autoencoder: { ...tinyAutoencoder, ddconfig: { ...tinyAutoencoder.ddconfig, resolution: 64, ch_mult: [1, 2, 2, 2] } },
      klWeight: 1e-6,
      diad: { ...tinyDiad, unet: { ...tinyDiad.unet, image_size: 8, attention_resolutions: [4] } },
    },
    stages: {
      autoencoder: { steps: 4, batchSize: 2, lr: 2e-4, checkpointEvery: 2, crop: 32 },
      diffusion: { steps: 6, batchSize: 4, lr: 2e-4, checkpointEvery: 3 },
      sg: { steps: 8, batchSize: 4, lr: 1e-4, checkpointEvery: 2 },
    },
    ddim: { tStart: 300, steps: 5, eta: 0, schedule: 'partial' },
    testBatchSize: 4,
    validation: { every: 4, tStarts: [200] },
  },
};

/** What each preset costs, measured on the 2-core development machine (shown by `diad fit --help`). */
export const PRESET_COST: Record<string, string> = {
  tiny: 'the demo: fit about 12 min, test 1 min (synthetic data, 2 cores)',
  cpu: 'fit measured 63 min for six classes (914 train images) on 2 cores, about 60 min with its current validation interval',
  ci: 'seconds: for tests, its metrics mean nothing',
};

/** Command-line choices that override a preset. */
export interface ConfigOverrides {
  roots: string[];
  classes?: string[] | null;
  init?: string | null;
  seed?: number;
  steps?: Partial<Record<keyof RunConfig['stages'], number>>;
  batchSize?: number;
  checkpointEvery?: number;
  featureExtractor?: FeatureExtractorConfig;
  ddim?: Partial<RunConfig['ddim']>;
  sigma?: number;
  targetFpr?: number;
  maxTrainPerClass?: number | null;
  maxTestPerClass?: number | null;
}

/**
 * Builds and validates the resolved config from a preset name and overrides.
 * With `init`, stages 1-2 are replaced by the checkpoint (their step counts become 0).
 * @throws Error naming the unknown preset and listing the known ones, or zod's issues.
 */
export function resolveConfig(presetName: string, o: ConfigOverrides): RunConfig {
  const preset = PRESETS[presetName];
  if (!preset) throw new Error(`unknown preset "${presetName}"; known presets: ${Object.keys(PRESETS).join(', ')}`);
  const p = structuredClone(preset);
  const stages = p.stages;
  for (const [k, v] of Object.entries(o.steps ?? {})) if (v !== undefined) stages[k as keyof typeof stages].steps = v;
  if (o.batchSize !== undefined) for (const s of Object.values(stages)) s.batchSize = o.batchSize;
  if (o.checkpointEvery !== undefined) for (const s of Object.values(stages)) s.checkpointEvery = o.checkpointEvery;
  if (o.init) stages.autoencoder.steps = stages.diffusion.steps = 0;
  const cfg: RunConfig = {
    ...p,
    seed: o.seed ?? p.seed,
    data: {
      ...p.data,
      roots: o.roots,
      classes: o.classes && o.classes.length ? [...o.classes].sort() : null,
      ...(o.maxTrainPerClass !== undefined ? { maxTrainPerClass: o.maxTrainPerClass } : {}),
      ...(o.maxTestPerClass !== undefined ? { maxTestPerClass: o.maxTestPerClass } : {}),
    },
    models: { ...p.models, init: o.init ?? null },
    stages,
    ddim: { ...p.ddim, ...o.ddim },
    // An explicit DDIM start is used as given: no start is then chosen on validation.
    ...(p.validation ? { validation: o.ddim?.tStart !== undefined ? { every: p.validation.every } : p.validation } : {}),
    featureExtractor: o.featureExtractor ?? p.featureExtractor,
    anomalyMap: { ...p.anomalyMap, ...(o.sigma !== undefined ? { sigma: o.sigma } : {}) },
    threshold: { ...p.threshold, ...(o.targetFpr !== undefined ? { targetFpr: o.targetFpr } : {}) },
  };
  return parseConfig(cfg, `preset ${presetName}`);
}

/**
 * Validates a config object (e.g. read from `config.json`).
 * @throws Error naming `source` and each invalid field.
 */
export function parseConfig(value: unknown, source: string): RunConfig {
  const r = runConfigSchema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`${source}: invalid run config: ${issues}`);
  }
  return r.data;
}

/** JSON with object keys sorted, so equal configs serialise (and hash) equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Short SHA-256 of the canonical JSON of a config (12 hex digits). */
export function configHash(cfg: RunConfig): string {
  return createHash('sha256').update(canonicalJson(cfg)).digest('hex').slice(0, 12);
}

/** One differing field: its dotted path and both values (as JSON). */
export interface ConfigDifference {
  path: string;
  stored: string;
  requested: string;
}

/** The leaf fields where two configs differ (dotted paths; arrays compared whole). */
export function diffConfigs(stored: unknown, requested: unknown, prefix = ''): ConfigDifference[] {
  const isObj = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);
  if (isObj(stored) && isObj(requested)) {
    const keys = [...new Set([...Object.keys(stored), ...Object.keys(requested)])].sort();
    return keys.flatMap((k) => diffConfigs(stored[k], requested[k], prefix ? `${prefix}.${k}` : k));
  }
  const a = canonicalJson(stored);
  const b = canonicalJson(requested);
  return a === b ? [] : [{ path: prefix || '(root)', stored: a ?? 'undefined', requested: b ?? 'undefined' }];
}
