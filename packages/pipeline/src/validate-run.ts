/**
 * `diad validate`: scores a fitted run's validation set (normal validation images plus a
 * synthesised defect on a copy of each, as `fit` builds it) with inference settings that do not
 * touch the weights changed (feature extractor, DDIM start, blur sigma), so such a choice is made on
 * validation, never on the test split. Writes nothing into the run.
 */
import type { FeatureExtractorConfig, RunConfig } from './config.js';
import type { RunDir } from './run-dir.js';
import type { ValidationInfo } from './fit.js';
import { openSplits, decodeSamples } from './data.js';
import { openInference, type EngineOptions } from './inference.js';
import { evaluateValidation, inferenceConfig, validationSet, type ValidationPoint } from './validate.js';

/** Inference settings to try instead of the run's. */
export interface ValidationOverrides {
  featureExtractor?: FeatureExtractorConfig;
  tStart?: number;
  sigma?: number;
}

/**
 * Scores the run's validation set with the run's model (the checkpoint `fit` selected) and the
 * run's inference settings with `overrides` applied.
 * @returns the validation point (metrics per class and mean, reconstruction errors) and the config used.
 * @throws Error when the run is not fitted, or from the data and the engines (naming the file).
 */
export async function validateRun(
  run: RunDir,
  overrides: ValidationOverrides,
  engine: EngineOptions,
  log: (l: string) => void,
): Promise<{ point: ValidationPoint; config: RunConfig; featureProvenance: string }> {
  const info = await run.readJson<ValidationInfo>('validation.json');
  if (!info) throw new Error(`${run.dir} is not fitted yet (no validation.json); run \`diad fit --resume ${run.dir}\` first`);
  const base = inferenceConfig(run.config, info);
  const cfg: RunConfig = {
    ...base,
    ddim: { ...base.ddim, ...(overrides.tStart !== undefined ? { tStart: overrides.tStart } : {}) },
    anomalyMap: { ...base.anomalyMap, ...(overrides.sigma !== undefined ? { sigma: overrides.sigma } : {}) },
    featureExtractor: overrides.featureExtractor ?? base.featureExtractor,
  };
  const splits = await openSplits(run.config);
  const val = await decodeSamples(splits.val, cfg.data.imageSize, 'validation');
  const set = validationSet(val, run.config.seed);
  log(`validation: ${set.classes.length} normal + ${set.classes.length} synthesised-defect images of ${splits.classes.join(', ')}`);
  const stages = await openInference(run, engine, log, cfg);
  try {
    const selected = info.selected;
    const point = await evaluateValidation(stages, set, cfg, run.config.seed, { stage: selected?.stage ?? 'final', step: selected?.step ?? 0 });
    return { point, config: cfg, featureProvenance: stages.featureProvenance };
  } finally {
    await stages.dispose();
  }
}
