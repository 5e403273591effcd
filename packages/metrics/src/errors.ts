/** Bad input: wrong shapes, NaN or infinite scores, unknown class, options out of range. */
export class MetricsInputError extends Error {
  override name = 'MetricsInputError';
}

/**
 * A metric that is mathematically undefined for the data given (e.g. AUROC of a class without
 * normal images, AU-PRO without a defective pixel). Thrown by the single-metric functions; the
 * accumulator's reports instead hold `null` with this reason.
 */
export class UndefinedMetricError extends Error {
  override name = 'UndefinedMetricError';
  constructor(readonly reason: string) {
    super(reason);
  }
}
