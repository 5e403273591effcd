/**
 * `diad fit`: one model for all classes, in three resumable stages (paper Sec. 3.2 and 4.1):
 * 1. the AutoencoderKL on the normal train images (L1 + KL);
 * 2. a plain latent-diffusion UNet (eps-prediction) on their latents, standing in for Stable
 *    Diffusion pretraining, which cannot be downloaded here;
 * 3. the SG network + SFF + UNet decoder, UNet encoder frozen, initialised as ControlNet does
 *    (SG network encoder copied from the stage-2 UNet).
 * With `--init`, a converted official checkpoint replaces stages 1-2. After training, the
 * validation images (carved from train) are scored to fix `predict`'s threshold.
 */
import { sliceBatch, type Autoencoder, type HostTensor } from '@diad/core';
import type { RunConfig } from './config.js';
import { RunDir, STAGES, type StageName } from './run-dir.js';
import { openSplits, decodeSamples, type Skipped } from './data.js';
import { installInterruptHandlers, runStage } from './train-loop.js';
import { thresholdAtFpr } from './threshold.js';
import { scoreImages } from './score.js';
import { createModels, type TrainEngine } from './models.js';

export interface FitOptions {
  quiet?: boolean;
  /** Engine of the training stages (default `ort`; validation scoring stays on tfjs). */
  engine?: TrainEngine;
  /** Log lines go here (default stderr). */
  log?: (line: string) => void;
}

/** What `fit` leaves in `validation.json`. */
export interface ValidationInfo {
  scores: { path: string; className: string; score: number }[];
  threshold: number;
  targetFpr: number;
  /** Heatmap colour range of reports and `predict`: median validation pixel .. threshold. */
  mapRange: [number, number];
  /**
   * Mean |x - decode(encode(x))| of the autoencoder on the validation images (posterior mode; image
   * convention, ImageNet-normalised units): how well stage 1 reconstructs unseen normal images.
   * Absent (like `trainedClasses`) in runs fitted before it was recorded.
   */
  autoencoderL1?: number;
  /** The classes the model was trained on (a test of other classes is an unseen-class experiment). */
  trainedClasses?: string[];
  skipped: Skipped[];
}

/**
 * Runs or resumes the fit of `run` (its stored config).
 * @throws NanLossError, InterruptedError, DatasetError, or Error naming the file at fault.
 */
export async function fit(run: RunDir, opts: FitOptions = {}): Promise<void> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const cfg: RunConfig = run.config;
  installInterruptHandlers();
  const release = run.lock();
  try {
    // Stages still to train (a stage with 0 steps or a finished one has nothing left).
    const pending = Object.fromEntries(
      await Promise.all(STAGES.map(async (st) => [st, cfg.stages[st].steps > 0 && !(await run.readStage(st))?.done] as const)),
    ) as Record<StageName, boolean>;
    const finished = await run.readJson<{ finishedAt: string }>('fit-timings.json');
    if (finished && !Object.values(pending).some(Boolean) && (await run.readJson('validation.json'))) {
      log(`${run.dir} is already fitted (finished ${finished.finishedAt}); nothing to do`);
      return;
    }
    const t0 = Date.now();
    const splits = await openSplits(cfg);
    log(`classes: ${splits.classes.join(', ')}; train ${splits.train.length}, validation ${splits.val.length} images (test split untouched)`);
    const train = await decodeSamples(splits.train, cfg.data.imageSize, 'train');
    const val = await decodeSamples(splits.val, cfg.data.imageSize, 'validation');
    await run.writeJson('skipped-fit.json', [...train.skipped, ...val.skipped]);
    const dataSeconds = (Date.now() - t0) / 1000;

    const models = await createModels(cfg, run, log, { trainEngine: opts.engine });
    log(`engine: ${models.engine}`);
    try {
      if (pending.autoencoder) {
        const t = await models.autoencoderTrainer(train.images);
        try {
          await runStage(run, 'autoencoder', cfg.stages.autoencoder, t, opts);
        } finally {
          t.dispose();
        }
      }
      const needLatents = pending.diffusion || pending.sg;
      const latents = needLatents ? await models.encodeTrain(train.images) : null;
      if (pending.diffusion) {
        const t = await models.diffusionTrainer(latents!);
        try {
          await runStage(run, 'diffusion', cfg.stages.diffusion, t, opts);
        } finally {
          t.dispose();
        }
      }
      if (pending.sg) {
        const t = await models.sgTrainer(latents!, train.images);
        try {
          await runStage(run, 'sg', cfg.stages.sg, t, opts);
        } finally {
          t.dispose();
        }
      }
      const tv = Date.now();
      const stages = await models.inferenceStages();
      try {
        const scored = await scoreImages(stages, val.images, cfg, cfg.seed);
        const autoencoderL1 = await reconstructionL1(stages.autoencoder, val.images, cfg.testBatchSize);
        const threshold = thresholdAtFpr(scored.scores, cfg.threshold.targetFpr);
        const info: ValidationInfo = {
          scores: val.samples.map((s, i) => ({ path: s.imagePath, className: s.className, score: scored.scores[i] })),
          threshold,
          mapRange: [Math.min(medianSample(scored.maps.data), threshold), threshold],
          targetFpr: cfg.threshold.targetFpr,
          autoencoderL1,
          trainedClasses: [...splits.classes],
          skipped: val.skipped,
        };
        await run.writeJson('validation.json', info);
        log(`validation: ${val.samples.length} normal images, threshold ${info.threshold.toPrecision(5)} at target FPR ${cfg.threshold.targetFpr}; autoencoder L1 ${autoencoderL1.toPrecision(4)}`);
      } finally {
        stages.dispose();
      }
      await run.writeJson('fit-timings.json', { dataSeconds, validationSeconds: (Date.now() - tv) / 1000, finishedAt: new Date().toISOString() });
    } finally {
      models.dispose();
    }
  } finally {
    release();
  }
}

/** Mean absolute error of the autoencoder's round trip (posterior mode) over images `[N, 3, H, W]`. */
async function reconstructionL1(ae: Autoencoder, images: HostTensor, batch: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < images.shape[0]; i += batch) {
    const x = sliceBatch(images, i, Math.min(images.shape[0], i + batch));
    const y = await ae.decode(await ae.encode(x));
    for (let k = 0; k < x.data.length; k++) sum += Math.abs(x.data[k] - y.data[k]);
  }
  return sum / Math.max(1, images.data.length);
}

/** Median of up to 100k evenly spaced values (the typical normal pixel score). */
function medianSample(v: Float32Array): number {
  const stride = Math.max(1, Math.floor(v.length / 100_000));
  const xs: number[] = [];
  for (let i = 0; i < v.length; i += stride) xs.push(v[i]);
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}
