/**
 * The decision threshold of `diad predict`. A validation split carved from normal train images has
 * no defects, so F1-max cannot be chosen on it; instead the threshold is set so that at most
 * `targetFpr` of the normal validation images score above it (an empirical quantile).
 */

/**
 * @param scores image scores of normal validation images.
 * @param targetFpr allowed fraction of them flagged anomalous, in [0, 1].
 * @returns the smallest validation score `t` with `#{s > t} <= targetFpr * n`; an image is
 *   anomalous when its score is strictly greater.
 * @throws Error when there are no scores (the validation split is empty: raise
 *   `data.validationFraction` or add train images).
 */
export function thresholdAtFpr(scores: readonly number[], targetFpr: number): number {
  if (scores.length === 0) throw new Error('no validation scores to choose a threshold from; the validation split is empty (raise validationFraction or add train images)');
  if (!(targetFpr >= 0 && targetFpr <= 1)) throw new Error(`targetFpr must be in [0, 1], got ${targetFpr}`);
  const s = [...scores].sort((a, b) => a - b);
  const n = s.length;
  const allowed = Math.floor(targetFpr * n + 1e-9);
  return s[n - 1 - Math.min(allowed, n - 1)];
}
