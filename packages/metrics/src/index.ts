/**
 * @diad/metrics: exact, streamable AUROC, AP, F1-max and AU-PRO for anomaly detection, image and
 * pixel level, per class and mean, in `standard` (scikit-learn / MVTec AD) and `diad` (official
 * DiAD evaluation) modes. Plain TypeScript on typed arrays; no tensor library.
 */
export { MetricsAccumulator, type AddOptions, type ComputeOptions } from './accumulator.js';
export {
  rocAuc,
  averagePrecision,
  f1Max,
  binaryClassificationMetrics,
  auPro,
  type AuProOptions,
} from './functions.js';
export { binaryMetrics, standardAuPro, diadAuPro, diadProThresholds, type BinaryMetrics } from './curve.js';
export { binsFromScores, type RankBins } from './bins.js';
export { pixelBins, type StoredImage } from './pixels.js';
export { maxImageScore, diadImageScore } from './image-score.js';
export { labelRegions8 } from './regions.js';
export { f1MaxThreshold, thresholdAtFpr, type OperatingPoint } from './threshold.js';
export {
  METRIC_NAMES,
  METRIC_LABELS,
  metricTable,
  formatPercent,
  type TableRow,
  OFFICIAL_METRIC_KEYS,
  toOfficialKeys,
  formatTable,
  type Mode,
  type MetricName,
  type MetricValues,
  type MetricsRow,
  type ClassReport,
  type MetricsReport,
} from './report.js';
export { MetricsInputError, UndefinedMetricError } from './errors.js';
export { floatToKey, keyToFloat, radixSortPairs } from './sort.js';
