/**
 * Single-metric functions on plain arrays, for scoring any detector without the accumulator.
 * They throw UndefinedMetricError where a metric is undefined (the accumulator reports null).
 */
import { storeImage, type AddOptions } from './accumulator.js';
import { binsFromScores } from './bins.js';
import { binaryMetrics, diadAuPro, diadProThresholds, standardAuPro, type BinaryMetrics } from './curve.js';
import { MetricsInputError } from './errors.js';
import { pixelBins, type StoredImage } from './pixels.js';
import type { Mode } from './report.js';

/**
 * AUROC of scores against binary labels, exactly scikit-learn's `roc_auc_score` (ties count
 * half). In `diad` mode a value below 0.5 is replaced by 1 - value, as the official evaluation does.
 * @param scores finite scores, higher = more anomalous.
 * @param labels same length, nonzero = anomalous.
 * @throws UndefinedMetricError without positives or negatives; MetricsInputError on bad input.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>, mode: Mode = 'standard'): number {
  const a = binaryMetrics(binsFromScores(scores, labels)).auroc;
  return mode === 'diad' && a < 0.5 ? 1 - a : a;
}

/** Average precision, exactly scikit-learn's `average_precision_score` (step-wise, not interpolated). Same errors as rocAuc. */
export function averagePrecision(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  return binaryMetrics(binsFromScores(scores, labels)).ap;
}

/** F1-max: the largest 2PR / (P + R) over scikit-learn's `precision_recall_curve`. Same errors as rocAuc. */
export function f1Max(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  return binaryMetrics(binsFromScores(scores, labels)).f1Max;
}

/** AUROC, AP, F1-max and the F1-max operating point in one pass. Same errors as rocAuc. */
export function binaryClassificationMetrics(scores: ArrayLike<number>, labels: ArrayLike<number>): BinaryMetrics {
  return binaryMetrics(binsFromScores(scores, labels));
}

/** Options of {@link auPro}. */
export interface AuProOptions {
  /** Default 'standard' (MVTec AD); 'diad' = official DiAD 200-threshold variant. */
  mode?: Mode;
  /** `standard` FPR integration limit in (0, 1], default 0.3. */
  fprLimit?: number;
  /** `diad` threshold count, default 200. */
  proThresholds?: number;
}

/**
 * Pixel AU-PRO over a set of anomaly maps (see standardAuPro / diadAuPro for the two definitions).
 * @param maps row-major `height x width` Float32Array per image.
 * @param masks same count, row-major `height x width` Uint8Array (nonzero = defective) or null.
 * @param shape the map height and width (all images the same here).
 * @throws MetricsInputError on mismatched counts or shapes; UndefinedMetricError without a
 *   defective or a normal pixel.
 */
export function auPro(
  maps: readonly Float32Array[],
  masks: readonly (Uint8Array | null)[],
  shape: Pick<AddOptions, 'height' | 'width'>,
  options: AuProOptions = {},
): number {
  if (maps.length !== masks.length) throw new MetricsInputError(`${maps.length} anomaly maps but ${masks.length} masks; pass one mask per map`);
  const images: StoredImage[] = maps.map((m, i) => storeImage(`image ${i}`, m, masks[i], shape));
  const mode = options.mode ?? 'standard';
  if (mode === 'standard') {
    const limit = options.fprLimit ?? 0.3;
    if (!(limit > 0 && limit <= 1)) throw new MetricsInputError(`fprLimit must be in (0, 1], got ${limit}`);
    return standardAuPro(pixelBins(images, null), limit);
  }
  const count = options.proThresholds ?? 200;
  const min = images.reduce((a, im) => Math.min(a, im.min), Infinity);
  const max = images.reduce((a, im) => Math.max(a, im.max), -Infinity);
  const thresholds = diadProThresholds(min, max, count);
  return diadAuPro(pixelBins(images, thresholds), thresholds.length);
}
