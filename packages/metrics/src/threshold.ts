/**
 * Operating thresholds: F1-max on labelled data, or a target false-positive rate on normal data.
 * Every threshold here means "predict anomalous when score >= threshold".
 */
import { binsFromScores } from './bins.js';
import { binaryMetrics } from './curve.js';
import { MetricsInputError, UndefinedMetricError } from './errors.js';

/** An operating point chosen on labelled data. */
export interface OperatingPoint {
  /** Predict anomalous when score >= threshold. */
  threshold: number;
  /** False-positive rate on the negatives at that threshold. */
  fpr: number;
  /** True-positive rate (recall) at that threshold; null when no labels / positives were given. */
  tpr: number | null;
  /** Precision at that threshold; null when no labels / positives were given. */
  precision: number | null;
  /** F1 at that threshold; null when no labels / positives were given. */
  f1: number | null;
}

/**
 * The threshold that maximises F1 (the F1-max operating point), over every distinct score.
 * @param scores image or pixel scores; labels nonzero = anomalous, same length.
 * @throws UndefinedMetricError without positives or negatives; MetricsInputError on bad input.
 */
export function f1MaxThreshold(scores: ArrayLike<number>, labels: ArrayLike<number>): OperatingPoint {
  const bins = binsFromScores(scores, labels);
  const r = binaryMetrics(bins);
  let fp = 0;
  for (let i = 0; i < labels.length; i++) if (!labels[i] && scores[i] >= r.f1Threshold) fp++;
  return { threshold: r.f1Threshold, fpr: fp / bins.N, tpr: r.f1Recall, precision: r.f1Precision, f1: r.f1Max };
}

/**
 * The lowest threshold whose false-positive rate is at most `targetFpr` (the most sensitive
 * detector within the false-alarm budget), e.g. fitted on normal validation images.
 * When even the highest negative score alone exceeds the budget, the threshold is the next
 * float64 above it (FPR 0).
 * @param scores scores; `labels` (optional, nonzero = anomalous) marks which are negatives —
 *   without labels all scores are negatives (normal validation data).
 * @param targetFpr in [0, 1].
 * @throws UndefinedMetricError without negatives; MetricsInputError on bad input.
 */
export function thresholdAtFpr(scores: ArrayLike<number>, targetFpr: number, labels?: ArrayLike<number>): OperatingPoint {
  if (!(targetFpr >= 0 && targetFpr <= 1)) throw new MetricsInputError(`targetFpr must be in [0, 1], got ${targetFpr}`);
  const lab = labels ?? new Uint8Array(scores.length);
  const bins = binsFromScores(scores, lab);
  if (bins.N === 0) throw new UndefinedMetricError('no negative (normal) score: a false-positive rate is undefined');
  const neg = new Float64Array(bins.N);
  for (let i = 0, q = 0; i < scores.length; i++) if (!lab[i]) neg[q++] = scores[i] === 0 ? 0 : scores[i];
  neg.sort();
  const allowed = Math.floor(targetFpr * bins.N + 1e-9);
  // neg is ascending; the threshold neg[i] flags the N - i negatives from i on (ties included).
  let threshold = nextUp(neg[bins.N - 1]);
  for (let i = bins.N - 1; i >= 0; i--) {
    if (i > 0 && neg[i - 1] === neg[i]) continue;
    if (bins.N - i > allowed) break;
    threshold = neg[i];
  }
  let fp = 0,
    tp = 0;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i] < threshold) continue;
    if (lab[i]) tp++;
    else fp++;
  }
  const P = bins.P;
  const precision = P > 0 ? (tp + fp > 0 ? tp / (tp + fp) : 1) : null;
  const tpr = P > 0 ? tp / P : null;
  const f1 = precision !== null && tpr !== null && precision + tpr > 0 ? (2 * precision * tpr) / (precision + tpr) : P > 0 ? 0 : null;
  return { threshold, fpr: fp / bins.N, tpr, precision, f1 };
}

/** The next float64 above x. */
function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  const f = new Float64Array([x]);
  const b = new BigInt64Array(f.buffer);
  b[0] += x > 0 ? 1n : -1n;
  return f[0];
}
