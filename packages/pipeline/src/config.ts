/**
 * The resolved run configuration, written to `runs/NAME/config.json`. Two parts:
 * - the train config (data, models, stages, validation, seed): everything that decides the
 *   weights. It is hashed and compared on resume, so a run folder is never continued with other
 *   settings;
 * - `inference`: the sampler (DDIM), the feature extractor, the anomaly map and the threshold. They
 *   touch no weight, so they are the run's defaults, not part of its hash: `test`, `predict`,
 *   `validate`, `ablate` and `export` override them (`--set key=value`, see {@link applyInferenceSets})
 *   and record the settings they used with every result.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { PRESETS as AUTOENCODER_PRESETS } from '@diad/autoencoder';
import { PRESETS as DIAD_PRESETS } from '@diad/sg-diffusion';

/** The learning-rate schedules of a stage (`lrSchedule`). */
export const LR_SCHEDULES = ['constant', 'cosine'] as const;
/** What an anomaly map compares the reconstruction with (`anomalyMap.reference`). */
export const MAP_REFERENCES = ['input', 'autoencoded'] as const;

const stage = z.object({
  /** Optimiser steps of the stage (0 skips it, e.g. when `--init` provides its weights). */
  steps: z.number().int().min(0),
  batchSize: z.number().int().min(1),
  /**
   * Micro-batches of `batchSize` whose mean gradient makes one optimiser step (Lightning's
   * `accumulate_grad_batches`; official DiAD 4); absent = 1.
   */
  accumulate: z.number().int().min(1).optional(),
  /** AdamW (peak) learning rate. */
  lr: z.number().positive(),
  /**
   * `constant` (absent; the official trainers') or `cosine`: annealed to 0 over the stage's `steps`
   * (core's AdamW `decaySteps`). `constant` written out is the default: dropped, so it hashes alike.
   */
  lrSchedule: z
    .enum(LR_SCHEDULES)
    .optional()
    .transform((v) => (v === 'constant' ? undefined : v)),
  /** AdamW betas; default [0.9, 0.999] (torch's). */
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).optional(),
  /** AdamW decoupled weight decay; default 0.01 (torch's). */
  weightDecay: z.number().min(0).optional(),
  /** Save a checkpoint (and the stage state) every this many steps, and at the end. */
  checkpointEvery: z.number().int().min(1),
});
export type StageConfig = z.infer<typeof stage>;

/**
 * A stage implementation in a config: its registry `kind` (see `@diad/feature-extractor`'s
 * `featureExtractors`, `@diad/sg-diffusion`'s `reconstructors`) and its own options, which the
 * registry entry validates when it is made.
 */
const kindSpec = z.object({ kind: z.string().min(1) }).passthrough();

/** Inference settings: what `test` / `predict` / `validate` / `ablate` / `export` may change without a refit. */
export const inferenceConfigSchema = z
  .object({
    /** The sampler: `{ kind: 'ddim', tStart, steps, eta, schedule }` (sg-diffusion's `DdimOptions`; official t 999, 10 steps). */
    reconstructor: kindSpec,
    /** The feature extractor: a shipped backbone by name (`{ kind: 'resnet50' }`, `default`) or `{ kind: 'onnx', path }`. */
    featureExtractor: kindSpec,
    anomalyMap: z
      .object({
        /** Gaussian blur sigma in pixels (scipy defaults otherwise; official run 5). */
        sigma: z.number().min(0),
        combine: z.enum(['add', 'mul']),
        /** Which of the feature extractor's maps to compare (0 = shallowest); absent = all (the paper: layer1-3). */
        levels: z
          .array(z.number().int().min(0), { invalid_type_error: 'expected a list of feature-map indices such as [1,2], or null for every level' })
          .min(1)
          .refine((l) => l.every((x, i) => i === 0 || x > l[i - 1]), 'levels must be distinct and ascending, e.g. [1,2]')
          .optional(),
        /** What the reconstruction is compared with: `input` (absent; the paper's) or `autoencoded` (core's `ScoringSettings`). */
        reference: z.enum(MAP_REFERENCES).optional(),
      })
      .strict()
      // `input` is the default: written out, it would hash (and calibrate) as another setting.
      .transform((m) => {
        if (m.reference === 'input') delete m.reference;
        return m;
      }),
    threshold: z
      .object({
        /**
         * How `predict` decides: `fpr` = the score quantile of the normal validation images giving
         * `targetFpr` false positives among them (F1-max needs defective images, which a validation
         * split carved from normal train images does not have).
         */
        mode: z.literal('fpr'),
        targetFpr: z.number().min(0).max(1),
      })
      .strict(),
    /** Batch size of reconstruction and feature extraction. */
    batchSize: z.number().int().min(1),
  })
  .strict();
export type InferenceConfig = z.infer<typeof inferenceConfigSchema>;
export type FeatureExtractorConfig = InferenceConfig['featureExtractor'];

/**
 * How the defective validation images are made (pipeline/validate.ts `validationSet`): `copies`
 * defective copies of each normal image, defects of size `scale` and strength `contrast` (factors
 * of `@diad/datasets`' defaults). Absent: one copy at full size and strength.
 */
export const defectsSchema = z
  .object({ copies: z.number().int().min(1).max(20), scale: z.number().positive().max(4), contrast: z.number().positive().max(1) })
  .strict();
export type DefectsConfig = z.infer<typeof defectsSchema>;

export const runConfigSchema = z
  .object({
    version: z.literal(2),
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
       * The autoencoder: its registry `kind` (@diad/autoencoder's `autoencoders`; default `kl`,
       * AutoencoderKL in the official format, `ddconfig` + `embed_dim` as
       * `models/autoencoder_kl_32x32x4.yaml`) and its config, validated by the kind when the model is built.
       */
      autoencoder: z.object({ kind: z.string().min(1).optional() }).passthrough(),
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
       * `wholeImages`: the stage's last `steps` steps (all of them if it has fewer) train on whole
       * images with this batch size, at learning rate `lr` (default the stage's). Crops alone fit the GroupNorm statistics and the attention of
       * the autoencoder to crop-sized inputs, and whole images then reconstruct badly (dark images
       * with one bright part worst: see the `cpu` preset); absent = crops throughout.
       */
      autoencoder: stage.extend({
        crop: z.number().int().min(8).multipleOf(8).nullable(),
        wholeImages: z
          .object({ steps: z.number().int().min(1), batchSize: z.number().int().min(1), lr: z.number().positive().optional() })
          .strict()
          .optional(),
      }),
      /** Stage 2: plain latent-diffusion UNet on the normal latents (stands in for SD pretraining). */
      diffusion: stage,
      /** Stage 3: SG network + SFF + UNet decoder, UNet encoder frozen (paper Sec. 3.2). */
      sg: stage,
    }),
    /**
     * Validation during `fit` (normal validation images + a synthesised defect on a copy of each):
     * scored every `every` steps of the SG stage (a multiple of its `checkpointEvery`; 0 = only at
     * the end), keeping the best checkpoint by the selection rule (pipeline/validate.ts). Then the
     * chosen checkpoint is scored with each DDIM start in `tStarts`, and the best becomes the run's
     * inference `tStart` (recorded in `validation.json`). Absent in runs made before it existed:
     * validated at the end only.
     */
    validation: z
      .object({
        every: z.number().int().min(0),
        tStarts: z.array(z.number().int().min(1).max(999)).optional(),
        /** See {@link defectsSchema}. */
        defects: defectsSchema.optional(),
      })
      .strict()
      .optional(),
    /** The run's default inference settings (not hashed). */
    inference: inferenceConfigSchema,
  })
  .strict()
  .superRefine((c, ctx) => {
    const every = c.validation?.every ?? 0;
    if (every > 0 && every % c.stages.sg.checkpointEvery !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['validation', 'every'],
        message: `${every} is not a multiple of stages.sg.checkpointEvery (${c.stages.sg.checkpointEvery}); validation runs at checkpoints (fix: a --checkpoint-every that divides ${every})`,
      });
    }
    if (c.stages.autoencoder.wholeImages && c.stages.autoencoder.crop === null) {
      ctx.addIssue({
        code: 'custom',
        path: ['stages', 'autoencoder', 'wholeImages'],
        message:
          'a whole-image phase needs crops before it (stages.autoencoder.crop is null: every step already takes whole images); remove wholeImages or set a crop',
      });
    }
    if (c.validation?.tStarts?.length && c.inference.reconstructor.kind !== 'ddim') {
      ctx.addIssue({
        code: 'custom',
        path: ['validation', 'tStarts'],
        message: `a DDIM-start sweep needs inference.reconstructor.kind ddim, not ${c.inference.reconstructor.kind}`,
      });
    }
  });

export type RunConfig = z.infer<typeof runConfigSchema>;

/** The fields a preset sets; data roots and classes come from the command line. */
export type Preset = Omit<RunConfig, 'data' | 'models'> & {
  data: Omit<RunConfig['data'], 'roots' | 'classes'>;
  models: Omit<RunConfig['models'], 'init'>;
};

// The packages' own presets: one definition of each size.
const tinyAutoencoder = { embed_dim: AUTOENCODER_PRESETS.tiny.embed_dim, ddconfig: { ...AUTOENCODER_PRESETS.tiny.ddconfig } };
const tinyDiad = DIAD_PRESETS.tiny;

const common = { version: 2 as const, seed: 0 };

/** The inference defaults every preset starts from (DDIM `partial` from a CPU-sized start; official: t 999, `official`). */
const inferenceDefaults = (o: { tStart: number; steps: number; batchSize: number; featureExtractor?: string }): InferenceConfig => ({
  reconstructor: { kind: 'ddim', tStart: o.tStart, steps: o.steps, eta: 0, schedule: 'partial' },
  featureExtractor: { kind: o.featureExtractor ?? 'default' },
  anomalyMap: { sigma: 4, combine: 'add' },
  threshold: { mode: 'fpr', targetFpr: 0.05 },
  batchSize: o.batchSize,
});

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
 * `sd15`: the paper's run (`models/diad.yaml`, `train.py`, `test.py`): 256 px, the SD 1.x kl-f8
 * AutoencoderKL (latents 32x32x4), the SD-1.5 UNet (859.52 M parameters) with the SG network + SFF
 * (471.87 M), CLIP's empty-prompt context. It starts from a Stable Diffusion 1.5 checkpoint
 * (`--init`), which replaces stages 1-2 and gives the text encoder the context is computed with.
 * Stage 3 as `train.py`: batch 12, 4 accumulated batches per step, AdamW lr 1e-5 (torch defaults
 * otherwise), Lightning's default 1000 epochs: for MVTec AD's 3629 train images 303 batches, 76
 * steps an epoch, 76000 steps. Test as `test.py`: DDIM 10 steps from t=999 (`official` schedule),
 * batch 1, ResNet-50 layer1-3 features, Gaussian sigma 5.
 */
const sd15: Preset = {
  ...common,
  preset: 'sd15',
  data: { imageSize: 256, validationFraction: 0.1, maxTrainPerClass: null, maxTestPerClass: null },
  models: {
    autoencoder: { embed_dim: AUTOENCODER_PRESETS['kl-f8'].embed_dim, ddconfig: { ...AUTOENCODER_PRESETS['kl-f8'].ddconfig } },
    klWeight: 1e-6,
    diad: DIAD_PRESETS.sd15,
  },
  stages: {
    // Replaced by the --init checkpoint (stage steps 0 with --init in any case).
    autoencoder: { steps: 0, batchSize: 12, lr: 4.5e-6, checkpointEvery: 1000, crop: null },
    diffusion: { steps: 0, batchSize: 12, lr: 1e-5, checkpointEvery: 1000 },
    sg: { steps: 76000, batchSize: 12, accumulate: 4, lr: 1e-5, checkpointEvery: 1000 },
  },
  inference: {
    ...inferenceDefaults({ tStart: 999, steps: 10, batchSize: 1, featureExtractor: 'resnet50' }),
    reconstructor: { kind: 'ddim', tStart: 999, steps: 10, eta: 0, schedule: 'official' },
    anomalyMap: { sigma: 5, combine: 'add' },
  },
  // Validation passes of the 256 px model are costly on a CPU: only at the end.
  validation: { every: 0 },
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
    inference: inferenceDefaults({ tStart: 500, steps: 10, batchSize: 8 }),
  },
  cpu: {
    ...common,
    preset: 'cpu',
    data: { imageSize: 128, validationFraction: 0.1, maxTrainPerClass: null, maxTestPerClass: null },
    models: {
      autoencoder: cpuAutoencoder,
      klWeight: 1e-6,
      diad: { ...tinyDiad, unet: { ...tinyDiad.unet, image_size: 32, attention_resolutions: [4, 2] }, hint_downsample: 4 },
    },
    stages: {
      // Stage 1 on 32-px crops, then its last 100 steps on whole images at a quarter of the rate.
      // Trained on crops alone (4000 steps, commit a614099), the autoencoder's L1 on whole
      // validation images was 0.75 on kolektor_sdd and 0.43 on magnetic_tile (the same images cut
      // into 32-px crops: 0.13 and 0.08), mean 0.328. More steps on whole images (batch 4, about
      // 2 s a step) from that checkpoint, mean L1: 40 at lr 8e-4 0.114, 160 at 8e-4 0.104, 100 at
      // 2e-4 0.098. At 8e-4 the L1 of a checkpoint is noisy: 3500 crop + 100 whole steps ended with
      // bottle at 0.215 (mean 0.142); 20 more steps at 8e-4 gave 0.078 (mean 0.107), at 1e-4 0.053 (0.102).
      // This preset measured (runs/cpu9): fit 56 min 21 s, autoencoder L1 0.102. Every rule value in
      // these comments was measured before the partial-schedule DDIM fix (core `noiseTimestep`),
      // except: the same weights after it (runs/cpu10) score 94.3 at t=500 and 93.4 at t=300 (91.0
      // before), test 76.5 / 80.6 image / pixel AUROC (70.6 / 74.7 before).
      autoencoder: {
        steps: 3500,
        batchSize: 8,
        lr: 8e-4,
        betas: [0.5, 0.9],
        weightDecay: 0,
        checkpointEvery: 200,
        crop: 32,
        wholeImages: { steps: 100, batchSize: 4, lr: 2e-4 },
      },
      diffusion: { steps: 2000, batchSize: 8, lr: 4e-4, checkpointEvery: 200 },
      sg: { steps: 1600, batchSize: 8, lr: 2e-4, checkpointEvery: 200 },
    },
    inference: {
      ...inferenceDefaults({ tStart: 300, steps: 10, batchSize: 8, featureExtractor: 'resnet50' }),
      // ResNet-50 layer2-3 (strides 8 and 16; layer1 lights up on the grain the reconstruction
      // regenerates). Chosen on the validation set of the model the README reports (`diad validate
      // --run runs/cpu6 --set anomalyMap.levels=...`, DDIM t=500; rule value): layer2-3 90.9,
      // layer1-3 (the paper's) 90.5, layer1-2 89.5, layer2 86.9. The margin is small and the order
      // is not stable between models: on the rejected cosine run layer2 alone won (88.8; layer1-3
      // and layer2-3 87.2, layer1-2 86.7, layer3 82.4). There, sigma 2 / 4 / 6 gave 88.8 / 88.8 /
      // 88.2, t 300 / 500 / 700 85.5 / 88.8 / 88.4, 20 DDIM steps 87.8.
      anomalyMap: { sigma: 4, combine: 'add', levels: [1, 2] },
    },
    // Tried on 2026-12-03 and rejected on validation: stages 2-3 cosine-annealed, everything else as
    // here (stage 1 reused from runs/cpu10): best rule value 93.45 (SG step 800, t=300) against 94.27.
    // The SG network's control on every UNet skip (`only_mid_control: false`, stages 1-2 reused):
    // 90.9 at SG step 800, 88.0 at 1600; lower DiAD L1, but it learns to copy defects too.
    // Tried on 2026-12-02 and rejected on validation: every stage cosine-annealed with 6000/2000/800
    // steps (the SG stage's time to the autoencoder): fit 53 min, autoencoder L1 lower on the
    // textures, but rule value 87.2 against 90.5 (layer1-3 maps; the DiAD reconstruction of grid lost: L1 0.52 vs 0.30).
    // Measured on the six shared classes (commit 6e34330, validation every 400, DDIM starts 150/300/500):
    // fit 63 min 15 s, the validation passes 438 s of it; the SG step-1600 checkpoint won (rule
    // value 89.6 vs 89.2 / 89.35 / 89.5 at 400 / 800 / 1200) and t=500 won (89.9 vs 89.6 at 300,
    // 85.6 at 150). Validating every 800 and sweeping 300/500 makes the same choices with three
    // passes fewer: measured again on 2026-12-02 (this preset): fit 55 min 47 s (stages 16.5 / 16.3 /
    // 17.6 min, validation 2.5 min), the same choices (SG step 1600, t=500).
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
      autoencoder: { steps: 4, batchSize: 2, lr: 2e-4, checkpointEvery: 2, crop: 32, wholeImages: { steps: 2, batchSize: 2, lr: 1e-4 } },
      diffusion: { steps: 6, batchSize: 4, lr: 2e-4, checkpointEvery: 3 },
      sg: { steps: 8, batchSize: 4, lr: 1e-4, checkpointEvery: 2 },
    },
    inference: inferenceDefaults({ tStart: 300, steps: 5, batchSize: 4 }),
    validation: { every: 4, tStarts: [200] },
  },
  sd15,
};

/** What each preset costs, measured on the 2-core development machine (shown by `diad fit --help`). */
export const PRESET_COST: Record<string, string> = {
  tiny: 'the demo: fit about 12 min, test 1 min (synthetic data, 2 cores)',
  cpu: 'fit measured 56 min for six classes (914 train images) on 2 cores',
  ci: 'seconds: for tests, its metrics mean nothing',
  sd15: 'needs --init (a Stable Diffusion 1.5 checkpoint); see diad bench --preset sd15 for the time of a step and the memory it needs',
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
  /** The learning-rate schedule of every stage (`stages.*.lrSchedule`). */
  lrSchedule?: (typeof LR_SCHEDULES)[number];
  maxTrainPerClass?: number | null;
  maxTestPerClass?: number | null;
  /** `key=value` settings of the inference defaults ({@link applyInferenceSets}). */
  inference?: readonly string[];
  /**
   * The `--init` checkpoint holds CLIP's text encoder (`cond_stage_model.transformer.*`, a Stable
   * Diffusion checkpoint): its UNet was trained on CLIP's context, so the run conditions on CLIP's
   * empty-prompt encoding (`clip`, the official DiAD conditioning) whatever context the preset has.
   */
  initTextEncoder?: boolean;
}

/**
 * Builds and validates the resolved config from a preset name and overrides.
 * With `init`, stages 1-2 are replaced by the checkpoint (their step counts become 0), and with
 * `initTextEncoder` the context is CLIP's empty-prompt encoding. An explicit
 * DDIM start (`inference` sets `reconstructor.tStart`) is used as given: no start is then swept on validation.
 * @throws Error naming the unknown preset and listing the known ones, a bad inference setting, or zod's issues.
 */
export function resolveConfig(presetName: string, o: ConfigOverrides): RunConfig {
  const preset = PRESETS[presetName];
  if (!preset) throw new Error(`unknown preset "${presetName}"; known presets: ${Object.keys(PRESETS).join(', ')}`);
  const p = structuredClone(preset);
  const stages = p.stages;
  for (const [k, v] of Object.entries(o.steps ?? {})) if (v !== undefined) stages[k as keyof typeof stages].steps = v;
  if (o.batchSize !== undefined) for (const s of Object.values(stages)) s.batchSize = o.batchSize;
  if (o.checkpointEvery !== undefined) for (const s of Object.values(stages)) s.checkpointEvery = o.checkpointEvery;
  if (o.lrSchedule === 'cosine') for (const s of Object.values(stages)) s.lrSchedule = 'cosine';
  if (o.lrSchedule === 'constant') for (const s of Object.values(stages)) delete s.lrSchedule;
  if (o.init) stages.autoencoder.steps = stages.diffusion.steps = 0;
  const sets = o.inference ?? [];
  const fixedStart = sets.some((s) => s.split('=')[0].trim() === 'reconstructor.tStart');
  const cfg: RunConfig = {
    ...p,
    seed: o.seed ?? p.seed,
    data: {
      ...p.data,
      roots: o.roots,
      classes: o.classes?.length ? [...o.classes].sort() : null,
      ...(o.maxTrainPerClass !== undefined ? { maxTrainPerClass: o.maxTrainPerClass } : {}),
      ...(o.maxTestPerClass !== undefined ? { maxTestPerClass: o.maxTestPerClass } : {}),
    },
    models: { ...p.models, ...(o.init && o.initTextEncoder ? { diad: { ...p.models.diad, context: { kind: 'clip' } } } : {}), init: o.init ?? null },
    stages,
    ...(p.validation ? { validation: fixedStart ? { every: p.validation.every } : p.validation } : {}),
    inference: applyInferenceSets(p.inference, sets),
  };
  return parseConfig(cfg, `preset ${presetName}`);
}

/**
 * Validates a config object (e.g. read from `config.json`). A version-1 config (inference settings
 * at the top level, before they were split from the train config) is read as version 2.
 * @throws Error naming `source` and each invalid field.
 */
export function parseConfig(value: unknown, source: string): RunConfig {
  const r = runConfigSchema.safeParse(migrate(value));
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`${source}: invalid run config: ${issues}`);
  }
  return r.data;
}

/** Version 1 -> 2: `ddim`, `featureExtractor` (`bundled` name), `anomalyMap`, `threshold`, `testBatchSize` move into `inference`. */
function migrate(value: unknown): unknown {
  const v = value as Record<string, unknown> | null;
  if (!v || typeof v !== 'object' || v.version !== 1) return value;
  const { ddim, featureExtractor, anomalyMap, threshold, testBatchSize, ...rest } = v;
  const fe = featureExtractor as { kind?: string; name?: string; path?: string } | undefined;
  return {
    ...rest,
    version: 2,
    inference: {
      reconstructor: { kind: 'ddim', ...(ddim as object) },
      featureExtractor: fe?.kind === 'bundled' ? { kind: fe.name } : fe,
      anomalyMap,
      threshold,
      batchSize: testBatchSize,
    },
  };
}

/** The train config: everything but `inference` (what the hash covers). */
export function trainConfig(cfg: RunConfig): Omit<RunConfig, 'inference'> {
  const { inference: _inference, ...train } = cfg;
  return train;
}

/**
 * Applies `key=value` settings to inference settings, in order. Keys are dotted paths inside the
 * inference config (`reconstructor.steps=5`, `anomalyMap.sigma=2`, `featureExtractor.path=a.onnx`);
 * values are JSON when they parse as JSON, else strings. `featureExtractor=NAME` (or
 * `reconstructor=NAME`) and `X.kind=NAME` start `X` afresh as `{ kind: NAME }`, so the options of the
 * previous kind do not leak into the new one. `null` removes an optional setting, giving its default
 * (`anomalyMap.levels=null`: every level).
 * @param source what the settings came from, named in errors (e.g. `--set`).
 * @throws Error naming the setting: no `=`, an unknown key (listing the known ones), or an invalid result.
 */
export function applyInferenceSets(base: InferenceConfig, sets: readonly string[], source = '--set'): InferenceConfig {
  const out = structuredClone(base) as Record<string, unknown>;
  for (const set of sets) {
    const eq = set.indexOf('=');
    if (eq <= 0) throw new Error(`${source} ${set}: expected key=value, e.g. reconstructor.steps=5, featureExtractor=resnet50, anomalyMap.sigma=2`);
    const path = set.slice(0, eq).trim().split('.');
    const raw = set.slice(eq + 1).trim();
    const value = parseValue(raw);
    const [head, ...rest] = path;
    if (!(head in out)) throw new Error(`${source} ${set}: unknown inference setting "${head}"; known: ${Object.keys(out).join(', ')}`);
    const isKind = (rest.length === 0 && typeof value === 'string' && typeof out[head] === 'object') || (rest.length === 1 && rest[0] === 'kind');
    if (isKind) {
      out[head] = { kind: String(value) };
      continue;
    }
    let node = out;
    for (const k of path.slice(0, -1)) {
      if (!node[k] || typeof node[k] !== 'object') throw new Error(`${source} ${set}: ${path.join('.')} is not an inference setting`);
      node = node[k] as Record<string, unknown>;
    }
    if (value === null) delete node[path[path.length - 1]];
    else node[path[path.length - 1]] = value;
  }
  const r = inferenceConfigSchema.safeParse(out);
  if (!r.success)
    throw new Error(`${source} ${sets.join(' ')}: invalid inference settings: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** JSON with object keys sorted, so equal configs serialise (and hash) equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    // An undefined field is absent, as in the JSON written out.
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Short SHA-256 of canonical JSON (12 hex digits): of a run's train config ({@link configHash}), of inference settings. */
export function shortHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 12);
}

/** The run's hash: of its train config only (inference settings change no weight). */
export function configHash(cfg: RunConfig): string {
  return shortHash(trainConfig(cfg));
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
