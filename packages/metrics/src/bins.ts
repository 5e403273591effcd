/**
 * Rank bins: the exact summary of a scored, labelled sample from which every threshold metric
 * here is computed. Boundaries are the distinct scores of the positives (plus, in `diad` mode,
 * the AU-PRO thresholds), ascending; negatives are counted as "equal to boundary j" or "strictly
 * between boundary j-1 and j". Nothing is quantised: a threshold curve (ROC, PR, PRO) only
 * changes direction at a positive's score, so these counts give every point of it.
 */
import { MetricsInputError } from './errors.js';

export interface RankBins {
  /** Boundary scores, ascending, distinct. Length m. */
  values: Float64Array;
  /** Positives scoring exactly `values[j]`. */
  pos: Float64Array;
  /** Σ 1/area(region) over the positive pixels scoring `values[j]` (pixel bins only, else null). */
  weight: Float64Array | null;
  /** Negatives scoring exactly `values[j]`. */
  eq: Float64Array;
  /** Length m+1: negatives strictly between `values[j-1]` and `values[j]` (j = 0: below all, j = m: above all). */
  btw: Float64Array;
  /** Number of positives (defective pixels / anomalous images). */
  P: number;
  /** Number of negatives. */
  N: number;
  /** Number of ground-truth regions (pixel bins only, else 0). */
  K: number;
  /** For each AU-PRO threshold (diad mode), the index of its boundary; null when none were asked. */
  thresholdBoundary: Int32Array | null;
}

/**
 * Rank bins of a plain (score, label) sample, e.g. image scores. Sorts positives and negatives
 * separately (native typed-array sort) and merges them. O(n log n).
 * @param scores finite scores; any length n.
 * @param labels length n, nonzero = positive (anomalous).
 * @throws MetricsInputError on differing lengths or a NaN / infinite score.
 */
export function binsFromScores(scores: ArrayLike<number>, labels: ArrayLike<number>): RankBins {
  const n = scores.length;
  if (labels.length !== n) {
    throw new MetricsInputError(`scores have length ${n} but labels have length ${labels.length}; pass one label per score`);
  }
  let P = 0;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(scores[i])) throw new MetricsInputError(`score ${i} is ${scores[i]}; scores must be finite (no NaN or infinity)`);
    if (labels[i]) P++;
  }
  const posS = new Float64Array(P);
  const negS = new Float64Array(n - P);
  for (let i = 0, p = 0, q = 0; i < n; i++) {
    const s = scores[i] === 0 ? 0 : scores[i];
    if (labels[i]) posS[p++] = s;
    else negS[q++] = s;
  }
  posS.sort();
  negS.sort();
  let m = 0;
  for (let i = 0; i < P; i++) if (i === 0 || posS[i] !== posS[i - 1]) m++;
  const values = new Float64Array(m);
  const pos = new Float64Array(m);
  for (let i = 0, j = -1; i < P; i++) {
    if (i === 0 || posS[i] !== posS[i - 1]) values[++j] = posS[i];
    pos[j]++;
  }
  const eq = new Float64Array(m);
  const btw = new Float64Array(m + 1);
  let j = 0;
  for (let i = 0; i < negS.length; i++) {
    const s = negS[i];
    while (j < m && values[j] < s) j++;
    if (j < m && values[j] === s) eq[j]++;
    else btw[j]++;
  }
  return { values, pos, weight: null, eq, btw, P, N: n - P, K: 0, thresholdBoundary: null };
}
