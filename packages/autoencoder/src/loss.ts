/**
 * The AutoencoderKL objective written once against `Ops`, so the tfjs engine and the onnxruntime
 * training graph (`recordAutoencoderTraining`) train from the same definition. It follows LDM
 * `ldm/modules/losses/contperceptual.py` (LPIPSWithDiscriminator, generator side before
 * `disc_start`; DiAD's `models/autoencoder_kl_32x32x4.yaml`: kl_weight 1e-6):
 *
 *   loss = sum|x - x_rec| / N + kl_weight * KL,   KL = 0.5 * sum(mean^2 + var - 1 - logvar) / N
 *
 * with x_rec decoded from a posterior sample (`AutoencoderKL.forward(sample_posterior=True)`).
 * The adversarial term is omitted (zero before `disc_start`), and so is the perceptual (LPIPS) term:
 * it would need the feature extractor inside the training graph.
 */
import type { Ops } from '@diad/core';
import type { AutoencoderConfig } from './config.js';
import { posterior, samplePosterior } from './distribution.js';
import { decodeLatent, encodeMoments } from './model.js';
import { DEFAULT_PREFIX } from './params.js';

/** Options of {@link autoencoderLoss}. */
export interface AutoencoderLossOptions {
  /** Weight of the KL term (official 1e-6). */
  klWeight?: number;
  /** Decode a posterior sample (official, default) or the mean. */
  samplePosterior?: boolean;
  /** State-dict prefix. Default `first_stage_model.`. */
  prefix?: string;
}

/** The terms of one evaluation, as scalars (engine tensors). */
export interface AutoencoderLossTerms<T> {
  /** The official `aeloss` (what is minimised). */
  loss: T;
  /** Mean |x - x_rec| per element (the official `rec_loss` log without a perceptual part). */
  l1: T;
  /** `sum(KL) / N` (the official `kl_loss` log). */
  kl: T;
  /** The decoded reconstruction `[N, C, H, W]` (for engine-side extra terms). */
  reconstruction: T;
}

/**
 * Evaluates the objective on a batch.
 * @param images `[N, C, H, W]` as fed to the encoder (image convention).
 * @param noise standard normal `[N, embed_dim, H/f, W/f]`, required when sampling.
 * @throws Error when sampling is requested without noise.
 */
export function autoencoderLoss<T>(
  ops: Ops<T>,
  cfg: AutoencoderConfig,
  images: T,
  noise: T | null,
  options: AutoencoderLossOptions = {},
): AutoencoderLossTerms<T> {
  const { klWeight = 1e-6, samplePosterior: sample = true, prefix = DEFAULT_PREFIX } = options;
  if (sample && noise === null) throw new Error('autoencoderLoss: samplePosterior needs a noise tensor of the latent shape');
  const p = posterior(ops, encodeMoments(ops, cfg, images, prefix));
  const reconstruction = decodeLatent(ops, cfg, sample ? samplePosterior(ops, p, noise!) : p.mean, prefix);
  const [n, c, h, w] = ops.shape(images);
  const latentCount = ops.shape(p.mean).reduce((a, b) => a * b, 1);
  const absSum = ops.sum(ops.abs(ops.sub(images, reconstruction)));
  // 0.5 * sum(mean^2 + exp(logvar) - 1 - logvar) / N
  const klSum = ops.sum(ops.sub(ops.add(ops.mul(p.mean, p.mean), ops.exp(p.logvar)), p.logvar));
  const kl = ops.scale(ops.addScalar(klSum, -latentCount), 0.5 / n);
  return {
    loss: ops.add(ops.scale(absSum, 1 / n), ops.scale(kl, klWeight)),
    l1: ops.scale(absSum, 1 / (n * c * h * w)),
    kl,
    reconstruction,
  };
}
