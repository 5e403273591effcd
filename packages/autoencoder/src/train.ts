/**
 * Training and fine-tuning of the AutoencoderKL on tfjs: the objective of `loss.ts` (written against
 * `Ops`, shared with the onnxruntime training graph) plus an optional perceptual term on tfjs
 * tensors (the official run uses LPIPS with weight 1; its per-image distance is broadcast to every
 * pixel before the sum, as `contperceptual.py` does):
 *
 *   loss = (sum|x - x_rec| + perceptual_weight * HW*C * sum_i p_i) / N + kl_weight * KL
 *
 * The optimizer is core's AdamW; its defaults here are the official autoencoder optimizer
 * (`torch.optim.Adam`, betas (0.5, 0.9)), i.e. AdamW with weight decay 0.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng, sizeOf, tensor, type AdamWOptions, type HostTensor, type StepResult } from '@diad/core';
import { engineTensor, Trainer, type ParamFilter, type ParamStore, TfjsOps } from '@diad/core/tfjs';
import type { AutoencoderConfig } from './config.js';
import { autoencoderLoss, type AutoencoderLossOptions } from './loss.js';
import { DEFAULT_PREFIX } from './params.js';

/** A differentiable per-image distance between images and reconstructions: NHWC maps to `[N]`. */
export type PerceptualFn = (x: tf.Tensor4D, xRec: tf.Tensor4D) => tf.Tensor1D;

/**
 * An LPIPS-style distance from any differentiable feature extractor (`lpips` without its learned
 * linear heads): for each feature map, channels normalised to unit length, squared difference
 * summed over channels, averaged over positions; summed over maps. LPIPS divides by
 * `norm + 1e-10`; here the norm is `sqrt(sum f^2 + 1e-20)` so an all-zero feature vector (common
 * after a ReLU) has a finite gradient instead of NaN.
 * @param extract images NHWC to feature maps NHWC (e.g. a backbone's stages; images in the image convention).
 */
export function featureDistance(extract: (x: tf.Tensor4D) => tf.Tensor4D[]): PerceptualFn {
  const unit = (f: tf.Tensor4D) => tf.div(f, tf.sqrt(tf.add(tf.sum(tf.square(f), 3, true), 1e-20)));
  return (x, xRec) => {
    const fx = extract(x);
    const fy = extract(xRec);
    if (fx.length === 0 || fx.length !== fy.length) throw new Error('featureDistance: the extractor must return the same non-zero number of maps for both inputs');
    const per = fx.map((a, i) => tf.mean(tf.sum(tf.square(tf.sub(unit(a), unit(fy[i]))), 3), [1, 2]));
    return tf.addN(per) as tf.Tensor1D;
  };
}

/** Options of {@link AutoencoderTrainer}. */
export interface AutoencoderTrainerOptions extends Omit<AutoencoderLossOptions, 'prefix'> {
  /** Optional perceptual term (tfjs only). */
  perceptual?: { fn: PerceptualFn; weight: number };
  /** AdamW settings; defaults betas (0.5, 0.9), weight decay 0 (official Adam). `lr` required. */
  optimizer: AdamWOptions;
  /** Global-norm gradient clipping; none by default (as the official run). */
  clipGradNorm?: number;
  /** Parameters to train (e.g. `first_stage_model.decoder.` to fine-tune the decoder only); default all. */
  trainable?: ParamFilter;
  /** Seed of the posterior-sampling noise (one stream per update index). */
  seed?: number;
  /** State-dict prefix. Default `first_stage_model.`. */
  prefix?: string;
  /** The run's configuration, hashed into checkpoints (resume refuses another). Default: model config + options. */
  runConfig?: unknown;
}

/** One update's numbers. */
export interface AutoencoderStepResult extends StepResult {
  /** Mean |x - x_rec| per element over the batch. */
  l1: number;
  /** `sum(KL) / N`. */
  kl: number;
  /** Mean perceptual distance (0 without one). */
  perceptual: number;
}


/**
 * Trains an AutoencoderKL held in a `ParamStore`: each step encodes, samples, decodes and applies
 * AdamW to the trainable parameters (core's `Trainer`: accumulation, NaN guard, checkpoints).
 * Checkpoints are official-layout safetensors (loadable with `loadAutoencoderParams`) plus an
 * optimizer file.
 */
export class AutoencoderTrainer {
  readonly trainer: Trainer;
  readonly ops: TfjsOps;
  private readonly seed: number;
  private readonly prefix: string;

  /** @throws Error when the `trainable` filter selects nothing. */
  constructor(readonly store: ParamStore, readonly config: AutoencoderConfig, readonly options: AutoencoderTrainerOptions) {
    this.ops = new TfjsOps(store);
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.seed = options.seed ?? 0;
    const names = store.names(options.trainable);
    const variables = Object.fromEntries(names.map((n) => [n, store.get(n)]));
    const { perceptual, ...rest } = options;
    this.trainer = new Trainer(variables, {
      optimizer: { betas: [0.5, 0.9], weightDecay: 0, ...options.optimizer },
      clipGradNorm: options.clipGradNorm,
      config: options.runConfig ?? { model: config, options: { ...rest, perceptualWeight: perceptual?.weight ?? 0 } },
    });
  }

  /**
   * One update on a batch of images `[N, C, H, W]` (host, fed to the encoder as given: the image
   * convention, ImageNet-normalised, as DiAD fine-tunes). `microBatch` splits the batch for
   * gradient accumulation (the gradient is the mean over the parts).
   * @throws Error on a non-finite loss or gradient (nothing is updated; see core's `Trainer`).
   */
  async step(images: HostTensor<'float32'>, microBatch = images.shape[0]): Promise<AutoencoderStepResult> {
    const [n, , h, w] = images.shape;
    const f = 2 ** (this.config.ddconfig.ch_mult.length - 1);
    if (images.shape.length !== 4 || images.layout === 'NHWC' || h % f !== 0 || w % f !== 0) {
      throw new Error(`AutoencoderTrainer.step: images must be NCHW [N, C, H, W] with H and W multiples of ${f}, got ${images.layout} [${images.shape.join(', ')}]`);
    }
    if (!Number.isInteger(microBatch) || microBatch < 1) throw new Error(`AutoencoderTrainer.step: microBatch must be a positive integer, got ${microBatch}`);
    const latentShape = [0, this.config.embed_dim, h / f, w / f];
    const sample = this.options.samplePosterior ?? true;
    const terms: { l1: tf.Scalar; kl: tf.Scalar; perceptual: tf.Scalar; n: number }[] = [];
    const closures: (() => tf.Scalar)[] = [];
    const per = sizeOf(images.shape.slice(1));
    // Noise depends on (seed, step) only, so a resumed run draws what the uninterrupted one would.
    const rng = new Rng(this.seed, 1000 + this.trainer.step);
    for (let s = 0; s < n; s += microBatch) {
      const e = Math.min(n, s + microBatch);
      const part = tensor(images.data.subarray(s * per, e * per), [e - s, ...images.shape.slice(1)], images.layout);
      const noise = sample ? tensor(rng.normals((e - s) * sizeOf(latentShape.slice(1))), [e - s, ...latentShape.slice(1)], 'NCHW') : null;
      closures.push(() => {
        const x = this.ops.input(part);
        const t = autoencoderLoss(this.ops, this.config, x, noise && this.ops.input(noise), { ...this.options, prefix: this.prefix });
        let loss = t.loss as tf.Scalar;
        let pMean = tf.scalar(0);
        const p = this.options.perceptual;
        if (p) {
          const d = p.fn(x as tf.Tensor4D, t.reconstruction as tf.Tensor4D);
          if (d.rank !== 1 || d.shape[0] !== e - s) throw new Error(`perceptual fn must return one distance per image ([${e - s}]), got [${d.shape.join(', ')}]`);
          loss = tf.add(loss, tf.mul((p.weight * per) / (e - s), tf.sum(d))) as tf.Scalar;
          pMean = tf.mean(d) as tf.Scalar;
        }
        terms.push({ l1: tf.keep(t.l1 as tf.Scalar), kl: tf.keep(t.kl as tf.Scalar), perceptual: tf.keep(pMean), n: e - s });
        return loss;
      });
    }
    try {
      const r = await this.trainer.trainStep(closures);
      const avg = async (k: 'l1' | 'kl' | 'perceptual') => {
        let sum = 0;
        for (const t of terms) sum += (await t[k].data())[0] * t.n;
        return sum / n;
      };
      return { ...r, l1: await avg('l1'), kl: await avg('kl'), perceptual: await avg('perceptual') };
    } finally {
      for (const t of terms) [t.l1, t.kl, t.perceptual].forEach((x) => x.dispose());
    }
  }

  /**
   * Saves every AutoencoderKL parameter (official names and layout, atomically) to `path`, and the
   * optimizer state beside it (`*.optim.safetensors`).
   */
  async save(path: string): Promise<void> {
    const params = Object.fromEntries(this.store.names().map((n) => [n, this.store.get(n)]));
    await this.trainer.save(path, {
      params,
      exportParam: async (name) => (await this.store.toHost((n) => n === name))[name],
    });
  }

  /**
   * Restores all parameters, the optimizer state and the step from a checkpoint of `save`.
   * @throws Error when the checkpoint belongs to another configuration or is incomplete (core's `Trainer.resume`).
   */
  async resume(path: string): Promise<void> {
    const params = Object.fromEntries(this.store.names().map((n) => [n, this.store.get(n)]));
    await this.trainer.resume(path, {
      params,
      importParam: (_name, h) => engineTensor(h.data, h.shape),
    });
  }

  /** Frees the optimizer state (the store stays with its owner). */
  dispose(): void {
    this.trainer.dispose();
  }
}
