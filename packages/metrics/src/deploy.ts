/**
 * Deployment helpers: operating thresholds and per-class score normalisation.
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
  let fp = 0, tp = 0;
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

/** How ScoreNormalizer maps a class's scores. */
export type NormalizationMethod = 'zscore' | 'minmax';

/** Streaming statistics of one class's normal pixel scores. */
interface ClassStats {
  count: number;
  mean: number;
  m2: number;
  min: number;
  max: number;
}

/**
 * Per-class score normalisation fitted on normal (defect-free) validation images, so that one
 * threshold can serve every class of a multi-class model:
 * `zscore`: (s - mean) / std of the class's normal pixel scores; `minmax`: (s - min) / (max - min).
 * The map is increasing and affine, so per-class AUROC, AP, F1-max and AU-PRO do not change, and
 * both image scores (max, and the official pooled max) transform the same way as the pixels.
 */
export class ScoreNormalizer {
  private readonly stats = new Map<string, ClassStats>();

  constructor(readonly method: NormalizationMethod = 'zscore') {
    if (method !== 'zscore' && method !== 'minmax') throw new MetricsInputError(`unknown normalisation "${String(method)}"; use "zscore" or "minmax"`);
  }

  /**
   * Add one normal validation anomaly map (any layout; all its values are used).
   * @throws MetricsInputError on a NaN / infinite score or an empty map.
   */
  fit(className: string, map: ArrayLike<number>): void {
    const n = map.length;
    if (n === 0) throw new MetricsInputError(`class "${className}": empty anomaly map`);
    let sum = 0, min = Infinity, max = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = map[i];
      if (!Number.isFinite(v)) throw new MetricsInputError(`class "${className}": score ${i} is ${v}; anomaly maps must be finite`);
      sum += v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const mean = sum / n;
    let m2 = 0;
    for (let i = 0; i < n; i++) m2 += (map[i] - mean) ** 2;
    const s = this.stats.get(className);
    if (!s) {
      this.stats.set(className, { count: n, mean, m2, min, max });
      return;
    }
    // Chan et al. pairwise combination of (count, mean, M2).
    const total = s.count + n;
    const delta = mean - s.mean;
    s.m2 += m2 + (delta * delta * s.count * n) / total;
    s.mean += (delta * n) / total;
    s.count = total;
    s.min = Math.min(s.min, min);
    s.max = Math.max(s.max, max);
  }

  /** Classes fitted so far. */
  get classNames(): string[] {
    return [...this.stats.keys()];
  }

  /**
   * The affine map of a class: normalised = (score - offset) / scale.
   * @throws MetricsInputError for a class never fitted or with zero spread.
   */
  params(className: string): { offset: number; scale: number } {
    const s = this.stats.get(className);
    if (!s) throw new MetricsInputError(`class "${className}" was not fitted; call fit() with its normal validation maps first (fitted: ${this.classNames.join(', ') || 'none'})`);
    const offset = this.method === 'zscore' ? s.mean : s.min;
    const scale = this.method === 'zscore' ? Math.sqrt(s.m2 / s.count) : s.max - s.min;
    if (!(scale > 0)) throw new MetricsInputError(`class "${className}": its normal scores are constant, so ${this.method} normalisation would divide by zero`);
    return { offset, scale };
  }

  /** Normalise one score. */
  normalizeScore(className: string, score: number): number {
    const { offset, scale } = this.params(className);
    return (score - offset) / scale;
  }

  /** Normalised copy of an anomaly map. */
  normalize(className: string, map: Float32Array): Float32Array {
    const { offset, scale } = this.params(className);
    const out = new Float32Array(map.length);
    for (let i = 0; i < map.length; i++) out[i] = (map[i] - offset) / scale;
    return out;
  }

  /** Plain-JSON form, for saving next to a model. */
  toJSON(): { method: NormalizationMethod; classes: Record<string, ClassStats> } {
    return { method: this.method, classes: Object.fromEntries([...this.stats].map(([k, v]) => [k, { ...v }])) };
  }

  /** Inverse of toJSON. @throws MetricsInputError on a malformed object. */
  static fromJSON(json: { method: NormalizationMethod; classes: Record<string, ClassStats> }): ScoreNormalizer {
    const n = new ScoreNormalizer(json.method);
    for (const [k, v] of Object.entries(json.classes ?? {})) {
      const fields = ['count', 'mean', 'm2', 'min', 'max'] as const;
      if (fields.some((f) => typeof v?.[f] !== 'number')) throw new MetricsInputError(`normaliser class "${k}": needs numeric ${fields.join(', ')}`);
      n.stats.set(k, { ...v });
    }
    return n;
  }
}
