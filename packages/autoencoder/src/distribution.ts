/**
 * The diagonal Gaussian posterior of the AutoencoderKL
 * (`ldm/modules/distributions/distributions.py` DiagonalGaussianDistribution), over `Ops`.
 */
import type { Ops } from '@diad/core';

/** Log-variance clamp of the official distribution. */
export const LOGVAR_MIN = -30;
export const LOGVAR_MAX = 20;

/** Mean and clamped log-variance of a posterior, each `[N, C, h, w]`. */
export interface DiagonalGaussian<T> {
  mean: T;
  logvar: T;
}

/**
 * Splits moments `[N, 2C, h, w]` into mean (first C channels) and log-variance (last C), the
 * latter clamped to [-30, 20], as `torch.chunk(parameters, 2, dim=1)` does.
 * @throws Error when the channel count is odd.
 */
export function posterior<T>(ops: Ops<T>, moments: T): DiagonalGaussian<T> {
  const c2 = ops.shape(moments)[1];
  if (c2 % 2 !== 0) throw new Error(`DiagonalGaussian: moments have ${c2} channels, need an even number (mean and log-variance)`);
  const [mean, raw] = ops.split(moments, [c2 / 2, c2 / 2]);
  return { mean, logvar: ops.clamp(raw, LOGVAR_MIN, LOGVAR_MAX) };
}

/** `mean + exp(0.5 * logvar) * noise`; `noise` is standard normal of the mean's shape (engine tensor). */
export function samplePosterior<T>(ops: Ops<T>, p: DiagonalGaussian<T>, noise: T): T {
  return ops.add(p.mean, ops.mul(ops.exp(ops.scale(p.logvar, 0.5)), noise));
}
