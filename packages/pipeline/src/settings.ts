/**
 * The inference settings a command runs a fitted run with, and what they need from validation.
 * A run's defaults are its config's `inference` with the DDIM start its fit chose on validation;
 * `--set key=value` changes them per command (no refit: none of them touches a weight). The
 * decision threshold and the heatmap colour range belong to the settings: for the fit's own they
 * are in `validation.json`; for others they are computed on the normal validation images (never
 * the test split) and cached in `calibration/<hash>.json`.
 */
import { scoreImages, type GuidedDenoiser, type Stages } from '@diad/core';
import type { ClassScoreStats } from '@diad/core/bundle';
import { createReconstructor } from '@diad/sg-diffusion';
import { checkFeatureExtractor, featureMapCount } from '@diad/feature-extractor';
import { applyInferenceSets, shortHash, type InferenceConfig } from './config.js';
import type { RunDir } from './run-dir.js';
import type { ValidationInfo } from './fit.js';
import { decodeSamples, openSplits } from './data.js';
import { thresholdAtFpr } from '@diad/metrics';
import { medianSample, runInference } from './validate.js';

/**
 * The fit's validation record of a run.
 * @throws Error when the run is not fitted yet, naming the command that finishes it.
 */
export async function readValidation(run: RunDir): Promise<ValidationInfo> {
  const v = await run.readJson<ValidationInfo>('validation.json');
  if (!v) throw new Error(`${run.dir} is not fitted yet (no validation.json); run \`diad fit --resume ${run.dir}\` first`);
  return v;
}

/**
 * The run's default inference settings with `sets` applied (`key=value`, see `applyInferenceSets`).
 * @throws Error naming a bad setting.
 */
export function resolveSettings(run: RunDir, validation: ValidationInfo, sets: readonly string[] = []): InferenceConfig {
  return applyInferenceSets(runInference(run.config, validation), sets);
}

/**
 * Checks settings before long work: the sampler and feature extractor kinds are registered, the
 * sampler's options are valid, the feature extractor's own check passes (e.g. its ONNX file
 * exists), and `anomalyMap.levels` names maps it gives (when that is known without loading it).
 * @throws Error naming the setting and the fix, listing the registered kinds for an unknown one.
 */
export async function checkSettings(settings: InferenceConfig): Promise<void> {
  // Making a sampler only validates its options; it runs nothing until reconstruct().
  createReconstructor(settings.reconstructor, UNOPENED, 'inference.reconstructor');
  await checkFeatureExtractor(settings.featureExtractor, 'inference.featureExtractor');
  const n = featureMapCount(settings.featureExtractor, 'inference.featureExtractor');
  const levels = settings.anomalyMap.levels;
  if (n !== null && levels?.some((l) => l >= n))
    throw new Error(
      `inference.anomalyMap.levels [${levels.join(', ')}]: the feature extractor "${settings.featureExtractor.kind}" gives ${n} feature maps (levels 0..${n - 1}); ` +
        `fix: --levels with indices below ${n}, or --levels all (a run's default is inference.anomalyMap.levels in its config.json)`,
    );
}

const UNOPENED: GuidedDenoiser = {
  guide: () => Promise.reject(new Error('checkSettings: this denoiser only checks sampler options')),
};

/**
 * The decision threshold on normal validation scores: the lowest one that flags at most `targetFpr`
 * of them (an image is anomalous when its score is >= the threshold; @diad/metrics' `thresholdAtFpr`).
 * A split carved from normal train images has no defects, so F1-max cannot be chosen on it.
 * @throws Error when there are no scores (the validation split is empty), naming the fix.
 */
export function decisionThreshold(scores: readonly number[], targetFpr: number): number {
  if (scores.length === 0)
    throw new Error('no validation scores to choose a threshold from; the validation split is empty (raise data.validationFraction or add train images)');
  return thresholdAtFpr(scores, targetFpr).threshold;
}

/** What decides scores: the settings but the threshold and the batch size. */
const scoringKey = (s: InferenceConfig): string => shortHash({ ...s, threshold: null, batchSize: null });

/** Hash of inference settings (12 hex digits), recorded with results. */
export const settingsHash = (s: InferenceConfig): string => shortHash(s);

/** A decision threshold and a heatmap colour range for some settings. */
export interface Calibration {
  threshold: number;
  targetFpr: number;
  /** Heatmap colour range: median normal validation pixel .. threshold. */
  mapRange: [number, number];
  /** Per class, the mean and spread of the normal validation scores (for class-normalised scores). */
  classScores: Record<string, ClassScoreStats>;
  /** `fit`: the fit's own (validation.json); `validation`: computed now on the normal validation images; `cache`: computed before. */
  source: 'fit' | 'validation' | 'cache';
}

/**
 * Per class, the count, mean and population standard deviation of image scores.
 * @param scores image scores with their class.
 */
export function classScoreStats(scores: readonly { className: string; score: number }[]): Record<string, ClassScoreStats> {
  const by = new Map<string, number[]>();
  for (const s of scores) by.set(s.className, [...(by.get(s.className) ?? []), s.score]);
  const out: Record<string, ClassScoreStats> = {};
  for (const [c, v] of [...by].sort(([a], [b]) => a.localeCompare(b))) {
    const mean = v.reduce((a, x) => a + x, 0) / v.length;
    out[c] = { count: v.length, mean, std: Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / v.length) };
  }
  return out;
}

/**
 * The threshold and heatmap range of `settings`: the fit's when the settings score as the fit's
 * do, else from the normal validation images scored with `stages` (opened with these settings;
 * a function is called only when scoring is needed).
 * @throws Error when the run's validation images cannot be read.
 */
export async function calibrate(
  run: RunDir,
  validation: ValidationInfo,
  settings: InferenceConfig,
  stages: Stages | (() => Promise<Stages>),
  log: (l: string) => void,
): Promise<Calibration> {
  const targetFpr = settings.threshold.targetFpr;
  const fitSettings = runInference(run.config, validation);
  if (scoringKey(settings) === scoringKey(fitSettings)) {
    const scores = validation.scores.map((s) => s.score);
    const threshold = targetFpr === validation.targetFpr ? validation.threshold : decisionThreshold(scores, targetFpr);
    return {
      threshold,
      targetFpr,
      mapRange: [Math.min(validation.mapRange[0], threshold), threshold],
      classScores: classScoreStats(validation.scores),
      source: 'fit',
    };
  }
  const file = `calibration/${scoringKey(settings)}.json`;
  let cached = await run.readJson<CalibrationCache>(file);
  let source: Calibration['source'] = 'cache';
  // Caches written before they recorded each score's class are scored again.
  if (!cached?.classes) {
    const splits = await openSplits(run.config);
    const val = await decodeSamples(splits.val, run.config.data.imageSize, 'validation');
    log(`calibration: scoring ${val.samples.length} normal validation images with these settings (threshold and heatmap range)`);
    const scored = await scoreImages(typeof stages === 'function' ? await stages() : stages, val.images, settings, run.config.seed);
    cached = { scores: scored.scores, classes: val.samples.map((s) => s.className), mapMedian: medianSample(scored.maps.data as Float32Array) };
    await run.writeJson(file, { settings, ...cached });
    source = 'validation';
  }
  const threshold = decisionThreshold(cached.scores, targetFpr);
  const classScores = classScoreStats(cached.scores.map((score, i) => ({ score, className: cached.classes[i] })));
  return { threshold, targetFpr, mapRange: [Math.min(cached.mapMedian, threshold), threshold], classScores, source };
}

/** `calibration/<hash>.json`: the normal validation images' scores (and classes) under some settings. */
interface CalibrationCache {
  scores: number[];
  classes: string[];
  mapMedian: number;
}
