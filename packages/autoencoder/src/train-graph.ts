/**
 * The AutoencoderKL's onnxruntime training graph: {@link autoencoderLoss} (the code the tfjs engine
 * trains with) recorded by core's `OnnxRecorderOps` with the parameters as inputs and
 * differentiated by `appendBackward`. Inputs: every parameter (official names and layouts),
 * `images` `[B, C, H, W]` and `noise` `[B, embed_dim, H/f, W/f]` (the posterior sample's noise).
 */
import type { HostTensor } from '@diad/core';
import { OnnxRecorderOps, trainingGraph, type TrainingGraph } from '@diad/core/onnx';
import { downsampleFactor, type AutoencoderConfig } from './config.js';
import { autoencoderLoss, type AutoencoderLossOptions } from './loss.js';

/** Options of {@link recordAutoencoderTraining}. */
export interface AutoencoderTrainingOptions extends AutoencoderLossOptions {
  /** Batch size B (the graph's shapes are static). */
  batch: number;
  /** Image (or crop) height and width, multiples of the downsampling factor. */
  height: number;
  width: number;
  /** Which parameters train (default all); the others are frozen inputs. */
  trainable?: (name: string) => boolean;
  /**
   * Multiply the loss by this (e.g. 1 / pixels per image, so the logged loss reads as a mean
   * absolute error; Adam is scale-invariant). Default 1.
   */
  lossScale?: number;
}

/**
 * Records the training graph of an AutoencoderKL.
 * @param params every parameter by official name (shapes define the inputs; values are not baked in).
 * @throws Error when the size is not a multiple of the downsampling factor, or a parameter is missing.
 */
export function recordAutoencoderTraining(
  cfg: AutoencoderConfig,
  params: Readonly<Record<string, HostTensor<'float32'>>>,
  o: AutoencoderTrainingOptions,
): TrainingGraph {
  const f = downsampleFactor(cfg);
  if (o.height % f !== 0 || o.width % f !== 0)
    throw new Error(`recordAutoencoderTraining: ${o.height}x${o.width} is not a multiple of the downsampling factor ${f}`);
  const rec = new OnnxRecorderOps(params, { graphName: 'autoencoder_train', paramInputs: true });
  const images = rec.graphInput('images', [o.batch, cfg.ddconfig.in_channels, o.height, o.width], false);
  const sample = o.samplePosterior ?? true;
  const noise = sample ? rec.graphInput('noise', [o.batch, cfg.embed_dim, o.height / f, o.width / f], false) : null;
  const { loss } = autoencoderLoss(rec, cfg, images, noise, o);
  return trainingGraph(rec, o.lossScale === undefined || o.lossScale === 1 ? loss : rec.scale(loss, o.lossScale), o.trainable ?? (() => true));
}
