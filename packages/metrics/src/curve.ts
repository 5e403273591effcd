/**
 * Threshold metrics computed exactly from {@link RankBins}: AUROC, average precision, F1-max,
 * and the two AU-PRO variants. Sources: scikit-learn `roc_auc_score`, `average_precision_score`,
 * `precision_recall_curve`; MVTec AD evaluation code `pro_curve_util.compute_pro` +
 * `generic_util.trapezoid`; DiAD `utils/eval_helper.compute_pro`.
 */
import type { RankBins } from './bins.js';
import { UndefinedMetricError } from './errors.js';

/** AUROC, AP and F1-max of one sample, plus the operating point of the F1-max. */
export interface BinaryMetrics {
  /** Area under the ROC curve, ties counted half (= sklearn `roc_auc_score`), in [0, 1]. */
  auroc: number;
  /** Step-wise average precision Σ (R_n - R_{n-1}) P_n (= sklearn `average_precision_score`). */
  ap: number;
  /** max over the precision-recall curve of 2PR / (P + R). */
  f1Max: number;
  /** Score threshold of the F1-max: predict anomalous when score >= threshold. */
  f1Threshold: number;
  /** Precision and recall at that threshold. */
  f1Precision: number;
  f1Recall: number;
}

/**
 * AUROC, AP and F1-max from rank bins, over every distinct score threshold (ties are one
 * threshold, as in scikit-learn, so a tie between a positive and a negative is a diagonal ROC
 * segment, i.e. counts half).
 * @throws UndefinedMetricError when there is no positive or no negative.
 */
export function binaryMetrics(b: RankBins): BinaryMetrics {
  const { P, N, pos, eq, btw, values } = b;
  if (P === 0) throw new UndefinedMetricError('no positive (anomalous) sample: AUROC, AP and F1-max are undefined');
  if (N === 0) throw new UndefinedMetricError('no negative (normal) sample: AUROC, AP and F1-max are undefined');
  let fp = 0,
    tp = 0,
    auc2 = 0,
    ap = 0;
  let f1Max = -1,
    f1Threshold = NaN,
    f1P = 0,
    f1R = 0;
  for (let j = values.length - 1; j >= 0; j--) {
    fp += btw[j + 1];
    const pj = pos[j];
    if (pj > 0) {
      // Negatives below this score count fully, equal ones half (doubled to stay integral).
      auc2 += pj * (2 * (N - fp) - eq[j]);
      tp += pj;
      fp += eq[j];
      const precision = tp / (tp + fp);
      const recall = tp / P;
      ap += pj * precision;
      const f1 = (2 * precision * recall) / (precision + recall);
      if (f1 > f1Max) {
        f1Max = f1;
        f1Threshold = values[j];
        f1P = precision;
        f1R = recall;
      }
    } else {
      fp += eq[j];
    }
  }
  return { auroc: auc2 / (2 * P * N), ap: ap / P, f1Max, f1Threshold, f1Precision: f1P, f1Recall: f1R };
}

function requireRegions(b: RankBins): Float64Array {
  if (!b.weight) throw new Error('AU-PRO needs pixel rank bins with region weights');
  if (b.K === 0 || b.P === 0) throw new UndefinedMetricError('no defective pixel (no ground-truth region): AU-PRO is undefined');
  if (b.N === 0) throw new UndefinedMetricError('no normal pixel: the FPR axis of AU-PRO is undefined');
  return b.weight;
}

/**
 * Standard AU-PRO (MVTec AD reference): the PRO/FPR curve through (0, 0) and every distinct
 * score threshold, where PRO is the mean over all ground-truth regions (8-connected, all images
 * pooled, each region weighted equally) of the fraction of the region above the threshold and
 * FPR the fraction of normal pixels above it; trapezoid integration from FPR 0 to `fprLimit`,
 * with linear interpolation of the last segment at the limit; divided by `fprLimit`.
 * Result in [0, 1]; random scores give about fprLimit / 2.
 * @param fprLimit in (0, 1], default 0.3.
 * @throws UndefinedMetricError without a defective or a normal pixel.
 */
export function standardAuPro(b: RankBins, fprLimit = 0.3): number {
  const weight = requireRegions(b);
  const { N, K, eq, btw } = b;
  let fp = 0,
    w = 0,
    x0 = 0,
    y0 = 0,
    area = 0,
    done = false;
  const to = (x1: number, y1: number): void => {
    if (x1 <= fprLimit) {
      area += 0.5 * (y0 + y1) * (x1 - x0);
      x0 = x1;
      y0 = y1;
    } else {
      const yl = y0 + ((y1 - y0) * (fprLimit - x0)) / (x1 - x0);
      area += 0.5 * (yl + y0) * (fprLimit - x0);
      done = true;
    }
  };
  for (let j = b.values.length - 1; j >= 0 && !done; j--) {
    // Negatives strictly above this boundary: horizontal segment; then the tie group (diagonal).
    if (btw[j + 1] > 0) {
      fp += btw[j + 1];
      to(fp / N, w / K);
      if (done) break;
    }
    fp += eq[j];
    w += weight[j];
    to(fp / N, w / K);
  }
  if (!done && btw[0] > 0) to((fp + btw[0]) / N, w / K);
  return area / fprLimit;
}

/**
 * The official DiAD AU-PRO thresholds: numpy `np.arange(min, max, (max - min) / count)` with
 * numpy 1.x casting, i.e. `max - min` in float32, the step in float64, `start + i * step1`
 * (numpy's `fill`), and each threshold compared with the float32 map as a float32.
 * @param min smallest score of the class (a float32 value).
 * @param max largest score of the class (a float32 value).
 * @returns the thresholds, rounded to float32 (what the comparison `amap > th` uses), ascending.
 * @throws UndefinedMetricError when max == min (numpy's arange would divide by zero).
 */
export function diadProThresholds(min: number, max: number, count = 200): Float64Array {
  const range = Math.fround(max - min);
  if (!(range > 0)) throw new UndefinedMetricError(`constant anomaly maps (min = max = ${min}): the official 200-threshold AU-PRO is undefined`);
  const step = range / count;
  const length = Math.max(0, Math.ceil(range / step));
  const out = new Float64Array(length);
  const step1 = min + step - min;
  for (let i = 0; i < length; i++) out[i] = Math.fround(i === 1 ? min + step : min + i * step1);
  return out;
}

/**
 * Official DiAD AU-PRO (`utils/eval_helper.compute_pro`): PRO and FPR at the thresholds of
 * {@link diadProThresholds} (pixel anomalous when score > threshold), keep the points with
 * FPR < 0.3, divide FPR by the largest kept FPR, trapezoid over the kept points (no (0, 0)
 * point, no interpolation).
 * @param b pixel rank bins built with these thresholds as boundaries.
 * @throws UndefinedMetricError without regions, normal pixels, or fewer than two kept points.
 */
export function diadAuPro(b: RankBins, thresholdCount: number): number {
  const weight = requireRegions(b);
  const tb = b.thresholdBoundary;
  if (!tb || tb.length !== thresholdCount) throw new Error('diadAuPro: rank bins were built without the AU-PRO thresholds');
  const { N, K, eq, btw } = b;
  const fpr = new Float64Array(tb.length);
  const pro = new Float64Array(tb.length);
  let fp = 0,
    w = 0,
    t = tb.length - 1;
  for (let j = b.values.length - 1; j >= 0; j--) {
    fp += btw[j + 1];
    for (; t >= 0 && tb[t] === j; t--) {
      fpr[t] = fp / N;
      pro[t] = w / K;
    }
    fp += eq[j];
    w += weight[j];
  }
  let first = 0;
  while (first < tb.length && !(fpr[first] < 0.3)) first++;
  if (tb.length - first < 2) {
    throw new UndefinedMetricError(`only ${tb.length - first} of the ${tb.length} thresholds have FPR < 0.3; the official AU-PRO needs at least 2`);
  }
  const maxFpr = fpr[first];
  if (maxFpr === 0) throw new UndefinedMetricError('every threshold with FPR < 0.3 has FPR 0; the official FPR normalisation divides by zero');
  let area = 0;
  for (let i = first; i < tb.length - 1; i++) {
    area += 0.5 * (pro[i] + pro[i + 1]) * ((fpr[i] - fpr[i + 1]) / maxFpr);
  }
  return area;
}
