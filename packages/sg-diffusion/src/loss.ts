/**
 * The denoiser's forward pass and training loss written once against `Ops`, so the tfjs engine
 * (`tf.variableGrads`) and the onnxruntime training graph (`recordDenoiserTraining`) train from
 * the same definition (LDM `ldm/models/diffusion/ddpm.py` `p_losses`, DiAD `sgn/sgn.py`).
 */
import type { Ops } from '@diad/core';
import { sgnConfigOf, type DiadConfig } from './config.js';
import { controlledUnet, hintBlock, semanticGuidedNetwork } from './model.js';

/**
 * eps-prediction of noisy latents.
 * @param x noisy latents `[N, in_channels, h, w]`.
 * @param hint the guiding images `[N, hint_channels, f*h, f*w]` (f = `hint_downsample`) (image convention): the SG network
 *   (hint block, SFF) steers the UNet as DiAD does; null: the plain UNet, no control (our stage 2,
 *   standing in for Stable Diffusion pretraining).
 * @param tEmb sinusoidal timestep embedding `[N, model_channels]` (`timestepEmbedding`).
 * @param context cross-attention context `[N, L, context_dim]`.
 * @returns eps `[N, out_channels, h, w]`.
 */
export function denoiserEps<T>(ops: Ops<T>, config: DiadConfig, x: T, hint: T | null, tEmb: T, context: T): T {
  return guidedEps(ops, config, x, hint === null ? null : hintBlock(ops, hint, config.hint_downsample), tEmb, context);
}

/**
 * {@link denoiserEps} from the hint block's output `[N, model_channels, h, w]` (`hintBlock`),
 * computed once per image for all DDIM steps; null: the plain UNet.
 */
export function guidedEps<T>(ops: Ops<T>, config: DiadConfig, x: T, guided: T | null, tEmb: T, context: T): T {
  const control = guided === null ? null : semanticGuidedNetwork(ops, sgnConfigOf(config), x, guided, tEmb, context);
  return controlledUnet(ops, config.unet, x, tEmb, context, control, config.only_mid_control);
}

/**
 * The eps-prediction MSE, `mean((eps - noise)^2)` over every element (LDM `loss_simple` with
 * `l_simple_weight` 1 and no learned log-variance, as DiAD trains): a scalar.
 */
export function epsLoss<T>(ops: Ops<T>, eps: T, noise: T): T {
  const d = ops.sub(eps, noise);
  return ops.mean(ops.mul(d, d));
}
