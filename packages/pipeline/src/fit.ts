/**
 * `diad fit`: one model for all classes, in three resumable stages (paper Sec. 3.2 and 4.1):
 * 1. the AutoencoderKL on the normal train images (L1 + KL);
 * 2. a plain latent-diffusion UNet (eps-prediction) on their latents, standing in for Stable
 *    Diffusion pretraining, which cannot be downloaded here;
 * 3. the SG network + SFF + UNet decoder, UNet encoder frozen, initialised as ControlNet does
 *    (SG network encoder copied from the stage-2 UNet).
 * With `--init`, a converted official checkpoint replaces stages 1-2. The validation images (carved
 * from train) plus a synthesised defect on a copy of each are scored at the SG stage's checkpoints
 * (`validation.every`) and at the end: the best checkpoint by the selection rule becomes the run's
 * model, and its normal images' scores fix `predict`'s threshold.
 */
import { existsSync, promises as fs } from 'node:fs';
import type { RunConfig } from './config.js';
import { type RunDir, STAGES, type Selection, type StageName } from './run-dir.js';
import { openSplits, decodeSamples, type Skipped } from './data.js';
import { installInterruptHandlers, runStage } from './train-loop.js';
import { decisionThreshold, settingsHash } from './settings.js';
import { createModels, type TrainEngine } from './models.js';
import { openInference } from './inference.js';
import { SELECTION_RULE, ddimStart, evaluateValidation, formatValidation, validationSet, withDdimStart, type ValidationPoint } from './validate.js';

export interface FitOptions {
  quiet?: boolean;
  /** Engine of the training stages (default `ort`; validation scores on onnxruntime, the feature extractor on its own engine). */
  engine?: TrainEngine;
  /** Log lines go here (default stderr). */
  log?: (line: string) => void;
}

/** What `fit` leaves in `validation.json`. */
export interface ValidationInfo {
  /** Image scores of the normal validation images (by the selected checkpoint). */
  scores: { path: string; className: string; score: number }[];
  threshold: number;
  targetFpr: number;
  /** Heatmap colour range of reports and `predict`: median validation pixel .. threshold. */
  mapRange: [number, number];
  /**
   * Mean |x - decode(encode(x))| of the autoencoder on the validation images (posterior mode; image
   * convention, ImageNet-normalised units): how well stage 1 reconstructs unseen normal images.
   * Absent (like the fields below) in runs fitted before it was recorded.
   */
  autoencoderL1?: number;
  /** The classes the model was trained on (a test of other classes is an unseen-class experiment). */
  trainedClasses?: string[];
  /** The selected checkpoint's validation: metrics on normal + synthesised defects, reconstruction errors. */
  selected?: ValidationPoint;
  /** The DDIM start chosen on validation among `validation.tStarts` (inference uses it instead of the config's). */
  tStart?: number;
  skipped: Skipped[];
}

/** `validation-curve.json`: every validation of the fit, and the one the rule chose. */
export interface ValidationCurve {
  rule: string;
  /** Hash of the inference settings the points were scored with (absent in runs made before it was recorded). */
  settingsHash?: string;
  points: ValidationPoint[];
  best: { stage: StageName; step: number; value: number } | null;
}

/**
 * Runs or resumes the fit of `run` (its stored config).
 * @throws NanLossError, InterruptedError, DatasetError, or Error naming the file at fault.
 */
export async function fit(run: RunDir, opts: FitOptions = {}): Promise<void> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const cfg: RunConfig = run.config;
  const started = (await Promise.all(STAGES.map((st) => run.readStage(st)))).some((st) => st !== null);
  if (started && run.recordedHash !== run.hash)
    throw new Error(
      `${run.path('config.json')} was edited after training began: its train config hashes to ${run.hash}, the run was made with ${run.recordedHash}. ` +
        `The weights so far belong to the recorded config; restore config.json (only the inference section may change), or start a new run with --out.`,
    );
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

    // Validation set: each normal validation image plus synthesised defects on copies of it.
    const vset = validationSet(val, cfg.seed, cfg.validation?.defects);
    const scoredWith = settingsHash(cfg.inference);
    const curve: ValidationCurve = (await run.readJson<ValidationCurve>('validation-curve.json')) ?? { rule: SELECTION_RULE, points: [], best: null };
    if (curve.settingsHash !== undefined && curve.settingsHash !== scoredWith && curve.points.length > 0) {
      // config.json's inference section changed since: old and new points would not compare.
      log(
        `validation: the points of ${curve.points.map((p) => `${p.stage} step ${p.step}`).join(', ')} were scored with other inference settings ` +
          `(config.json's inference section changed); they are dropped, and the best checkpoint is chosen among those validated from now on`,
      );
      curve.points = [];
      curve.best = null;
    }
    curve.settingsHash = scoredWith;
    let validationSeconds = 0;
    /** Scores the validation set with the stage's current checkpoint (once per step); `keep`: a candidate for the best. */
    const configStart = ddimStart(cfg.inference);
    const validate = async (stage: StageName, step: number, keep: boolean, tStart = configStart): Promise<ValidationPoint> => {
      const known = curve.points.find((p) => p.stage === stage && p.step === step && p.tStart === tStart);
      if (known) return known;
      const tv = Date.now();
      // On onnxruntime through the run's export of the current checkpoints (the tfjs path is several times slower).
      const settings = tStart === undefined ? cfg.inference : withDdimStart(cfg.inference, tStart);
      const stages = await openInference(run, settings, { engine: 'ort' }, () => {});
      let point: ValidationPoint;
      try {
        point = await evaluateValidation(stages, vset, settings, cfg.seed, { stage, step });
      } finally {
        await stages.dispose();
      }
      curve.points.push(point);
      const better = keep && (!curve.best || point.value >= curve.best.value);
      if (better) {
        await run.keepBest(stage);
        curve.best = { stage, step, value: point.value };
      }
      await run.writeJson('validation-curve.json', curve);
      const passSeconds = (Date.now() - tv) / 1000; // opening the export included
      validationSeconds += passSeconds;
      const m = point.mean;
      log(
        `validation at ${stage} step ${step}${tStart !== configStart ? ` with DDIM from t=${tStart}` : ''}: image AUROC ${pct(m.aurocImage)}, pixel AUROC ${pct(m.aurocPixel)}, AU-PRO ${pct(m.auPro)}; ` +
          `DiAD L1 ${meanOf(Object.values(point.reconstruction).map((r) => r.diadL1)).toFixed(4)}${better ? ' (best so far)' : ''} [${passSeconds.toFixed(passSeconds < 10 ? 1 : 0)} s]`,
      );
      return point;
    };
    const every = cfg.validation?.every ?? 0;

    const models = await createModels(cfg, run, log, { trainEngine: opts.engine });
    log(`engine: ${models.engine}`);
    try {
      if (cfg.stages.autoencoder.steps === 0 && !cfg.models.init)
        log(
          'autoencoder: 0 steps and no --init checkpoint: it keeps its random initialisation, so reconstructions will not resemble the input; give --ae-steps N or --init CKPT',
        );
      if (pending.autoencoder) {
        const ae = cfg.stages.autoencoder;
        if (ae.wholeImages && ae.wholeImages.steps >= ae.steps)
          log(
            `autoencoder: all ${ae.steps} steps on whole images (stages.autoencoder.wholeImages.steps ${ae.wholeImages.steps} >= its ${ae.steps} steps), none on crops`,
          );
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
          await runStage(run, 'sg', cfg.stages.sg, t, {
            ...opts,
            afterCheckpoint: async (st) => {
              if (every > 0 && st.step % every === 0) await validate('sg', st.step, true);
            },
          });
        } finally {
          t.dispose();
        }
      }
      // The run's model: the SG stage's best checkpoint by the rule (its last one when nothing beat
      // it); without an SG stage (`--sg-steps 0`), the latent-diffusion model as it is.
      const last: StageName = cfg.stages.sg.steps > 0 ? 'sg' : 'diffusion';
      const lastStep = (await run.readStage(last))?.step ?? 0;
      const lastPoint = await validate(last, lastStep, last === 'sg');
      let chosen = lastPoint;
      if (last === 'sg' && curve.best && curve.best.step !== lastStep) {
        chosen = curve.points.find((p) => p.stage === 'sg' && p.step === curve.best!.step)!;
        const checkpoint = `checkpoints/best-sg-${String(curve.best.step).padStart(6, '0')}.safetensors`;
        if (!existsSync(run.path(checkpoint))) {
          throw new Error(
            `${run.path(checkpoint)} (the best SG checkpoint) is missing; delete ${run.path('validation-curve.json')} and run \`diad fit --resume ${run.dir}\` to validate again`,
          );
        }
        const selection: Selection = { stage: 'sg', step: curve.best.step, checkpoint, rule: SELECTION_RULE, value: curve.best.value };
        await run.writeJson('selection.json', selection);
        log(`selected: SG step ${curve.best.step} of ${lastStep} by the rule: ${SELECTION_RULE}`);
      } else {
        await fs.rm(run.path('selection.json'), { force: true });
      }
      // The DDIM start: each candidate scored on the chosen weights, the best by the same rule (ties: the config's).
      for (const t of cfg.validation?.tStarts ?? []) {
        const p = await validate(chosen.stage as StageName, chosen.step, false, t);
        if (p.value > chosen.value) chosen = p;
      }
      if (chosen.tStart !== configStart) log(`selected: DDIM from t=${chosen.tStart} (the config says ${configStart}) by the same rule`);
      const threshold = decisionThreshold(chosen.normalScores, cfg.inference.threshold.targetFpr);
      const info: ValidationInfo = {
        scores: vset.paths.map((path, i) => ({ path, className: vset.classes[i], score: chosen.normalScores[i] })),
        threshold,
        mapRange: [Math.min(chosen.mapMedian, threshold), threshold],
        targetFpr: cfg.inference.threshold.targetFpr,
        autoencoderL1: meanOf(vset.classes.map((c) => chosen.reconstruction[c].autoencoderL1)),
        trainedClasses: [...splits.classes],
        selected: chosen,
        ...(chosen.tStart !== configStart ? { tStart: chosen.tStart } : {}),
        skipped: val.skipped,
      };
      await run.writeJson('validation.json', info);
      log(
        `validation: ${vset.classes.length} normal + ${vset.defectiveClasses.length} synthesised-defect images (${[...new Set(vset.kinds)].join(', ')}); ` +
          `threshold ${threshold.toPrecision(5)} at target FPR ${cfg.inference.threshold.targetFpr}`,
      );
      for (const line of formatValidation(chosen)) log(`  ${line}`);
      await run.writeJson('fit-timings.json', { dataSeconds, validationSeconds, finishedAt: new Date().toISOString() });
    } finally {
      models.dispose();
    }
  } finally {
    release();
  }
}

function pct(v: number | null): string {
  return v === null ? '-' : (100 * v).toFixed(1);
}

function meanOf(v: number[]): number {
  return v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
}
