/**
 * `diad validate`: scores a fitted run's validation set (normal validation images plus a
 * synthesised defect on a copy of each, as `fit` builds it) with other inference settings (feature
 * extractor, sampler, blur sigma: none touches a weight), so such a choice is made on validation,
 * never on the test split. Writes nothing into the run.
 */
import type { DefectsConfig, InferenceConfig } from './config.js';
import type { RunDir } from './run-dir.js';
import { openSplits, decodeSamples } from './data.js';
import { openInference, type EngineOptions } from './inference.js';
import { checkSettings, readValidation, resolveSettings } from './settings.js';
import { evaluateValidation, validationSet, type ValidationPoint } from './validate.js';

/**
 * Scores the run's validation set with the run's model (the checkpoint `fit` selected) and
 * `settings` (default: the run's), on defective images made as `defects` says (default: as the
 * run's `validation.defects`, so as `fit` scored them).
 * @returns the validation point (metrics per class and mean, reconstruction errors), the settings used and the feature extractor's provenance.
 * @throws Error when the run is not fitted, for bad settings, or from the data and the engines (naming the file).
 */
export async function validateRun(
  run: RunDir,
  settings: InferenceConfig | undefined,
  engine: EngineOptions,
  log: (l: string) => void,
  defects: DefectsConfig | undefined = run.config.validation?.defects,
): Promise<{ point: ValidationPoint; settings: InferenceConfig; featureProvenance: string }> {
  const info = await readValidation(run);
  const used = settings ?? resolveSettings(run, info);
  await checkSettings(used);
  const splits = await openSplits(run.config);
  const val = await decodeSamples(splits.val, run.config.data.imageSize, 'validation');
  const set = validationSet(val, run.config.seed, defects);
  log(`validation: ${set.classes.length} normal + ${set.defectiveClasses.length} synthesised-defect images of ${splits.classes.join(', ')}`);
  const stages = await openInference(run, used, engine, log);
  try {
    const selected = info.selected;
    const point = await evaluateValidation(stages, set, used, run.config.seed, { stage: selected?.stage ?? 'final', step: selected?.step ?? 0 });
    return { point, settings: used, featureProvenance: stages.featureProvenance };
  } finally {
    await stages.dispose();
  }
}
