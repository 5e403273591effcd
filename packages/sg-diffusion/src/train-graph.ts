/**
 * The denoiser's onnxruntime training graph: `denoiserEps` and `epsLoss` (the code the tfjs engine
 * trains with) recorded by core's `OnnxRecorderOps` with the parameters as inputs, differentiated
 * by `appendBackward`. One run gives the loss and the gradient of every trainable parameter.
 *
 * Inputs: every parameter (official names and layouts), `x_noisy` `[B, C, h, w]` (`qSample` of the
 * latents, computed on the host as for tfjs), `noise` (the same shape), `t_emb` `[B, model_channels]`
 * (`timestepEmbedding` of the timesteps), `hint` `[B, hint_channels, f*h, f*w]` (f = `hint_downsample`) when guided, and
 * `context` `[B, L, context_dim]` for a file context (a learned context is a parameter).
 */
import type { HostTensor } from '@diad/core';
import { OnnxRecorderOps, trainingGraph, type Sym, type TrainingGraph } from '@diad/core/onnx';
import type { DiadConfig } from './config.js';
import { contextFor } from './context.js';
import { denoiserEps, epsLoss } from './loss.js';

/** Options of {@link recordDenoiserTraining}. */
export interface DenoiserTrainingOptions {
  /** Batch size B (the graph's shapes are static). */
  batch: number;
  latentHeight: number;
  latentWidth: number;
  /** true: SG network + controlled UNet fed by `hint` (DiAD, stage 3); false: the plain UNet (stage 2). */
  guided: boolean;
  /** Which parameters train; the others are frozen inputs. */
  trainable: (name: string) => boolean;
  /** Context tokens L of the `context` input; required for a file context. */
  contextTokens?: number;
}

/**
 * Records the forward pass of the eps-MSE loss (parameters as graph inputs): the recording and its
 * scalar loss, before the backward pass is appended (what {@link recordDenoiserTraining} serialises;
 * the training-memory estimate reads which forward values the backward pass needs).
 * @param params every parameter by official name (only their shapes are read).
 * @throws Error naming a missing parameter, or a constant context without `contextTokens`.
 */
export function recordDenoiserLoss(
  config: DiadConfig,
  params: Readonly<Record<string, HostTensor<'float32'>>>,
  o: Omit<DenoiserTrainingOptions, 'trainable'>,
): { rec: OnnxRecorderOps; loss: Sym } {
  const { batch: b, latentHeight: h, latentWidth: w } = o;
  const u = config.unet;
  const rec = new OnnxRecorderOps(params, { graphName: o.guided ? 'diad_sg_train' : 'diad_unet_train', paramInputs: true });
  const x = rec.graphInput('x_noisy', [b, u.in_channels, h, w], false);
  const noise = rec.graphInput('noise', [b, u.out_channels, h, w], false);
  const tEmb = rec.graphInput('t_emb', [b, u.model_channels], false);
  const hint = o.guided ? rec.graphInput('hint', [b, config.hint_channels, config.hint_downsample * h, config.hint_downsample * w], false) : null;
  let context: Sym;
  if (config.context.kind !== 'learned') {
    if (!o.contextTokens) throw new Error('recordDenoiserTraining: a constant context needs contextTokens (L of the [1, L, D] context)');
    context = rec.graphInput('context', [b, o.contextTokens, u.context_dim], false);
  } else context = contextFor(rec, config.context, null, b);
  return { rec, loss: epsLoss(rec, denoiserEps(rec, config, x, hint, tEmb, context), noise) };
}

/**
 * Records the eps-MSE training graph of a DiAD denoiser.
 * @param params every parameter by official name (their shapes define the inputs; values are not baked in).
 * @throws Error naming a missing parameter, or a file context without `contextTokens`.
 */
export function recordDenoiserTraining(config: DiadConfig, params: Readonly<Record<string, HostTensor<'float32'>>>, o: DenoiserTrainingOptions): TrainingGraph {
  const { rec, loss } = recordDenoiserLoss(config, params, o);
  return trainingGraph(rec, loss, o.trainable);
}
