/**
 * The DiAD denoiser written once against core's `Ops`: the controlled UNet
 * (`model.diffusion_model.*`, DiAD `sgn/sgn.py` ControlledUnetModel) and the Semantic-Guided
 * network with the SFF block (`control_model.*`, SemanticGuidedNetwork).
 */
import type { Ops } from '@diad/core';
import type { SGNConfig, UNetConfig } from './config.js';
import { unetArch, type UNetArch } from './architecture.js';
import { conv1, conv3, resBlock, spatialTransformer, timeEmbed, upsample } from './layers.js';
import { checkSgnConfig, SFF_SOURCES, SFF_TARGETS, SGN_PREFIX, UNET_PREFIX } from './spec.js';

/** Runs `input_blocks` and returns every block's output; `afterFirst` is added to block 0's output. */
function encoder<T>(ops: Ops<T>, p: string, c: UNetConfig, l: UNetArch, x: T, embAct: T, context: T, afterFirst: T | null): T[] {
  const outs: T[] = [];
  let h = x;
  l.input.forEach((b, i) => {
    const q = `${p}input_blocks.${i}`;
    if (b.kind === 'conv') h = conv3(ops, h, `${q}.0`);
    else if (b.kind === 'down') h = conv3(ops, h, `${q}.0.op`, 2);
    else {
      h = resBlock(ops, `${q}.0`, h, embAct, b.inCh, b.outCh);
      if (b.attn) h = spatialTransformer(ops, `${q}.1`, h, context, b.attn, c.transformer_depth);
    }
    if (i === 0 && afterFirst) h = ops.add(h, afterFirst);
    outs.push(h);
  });
  return outs;
}

function middle<T>(ops: Ops<T>, p: string, c: UNetConfig, l: UNetArch, h: T, embAct: T, context: T): T {
  h = resBlock(ops, `${p}middle_block.0`, h, embAct, l.midCh, l.midCh);
  h = spatialTransformer(ops, `${p}middle_block.1`, h, context, l.midAttn, c.transformer_depth);
  return resBlock(ops, `${p}middle_block.2`, h, embAct, l.midCh, l.midCh);
}

/**
 * ControlledUnetModel.forward: eps-prediction.
 * The control tensors (13 for the 4-level config, as the SG network returns them) are added to
 * the middle-block output (the last one) and to the skips, popped from the end: with
 * `onlyMidControl` only the first three decoder blocks' skips (controls 11, 10, 9: the SFF
 * outputs) get theirs, otherwise every skip does.
 * @param x noisy latents `[N, in_channels, h, w]`.
 * @param tEmb sinusoidal timestep embedding `[N, model_channels]` ({@link timestepEmbedding}).
 * @param context cross-attention context `[N, L, context_dim]`.
 * @param control `null` for the plain UNet, else one tensor per input block plus the middle one.
 * @returns eps `[N, out_channels, h, w]`.
 * @throws Error when `control` has the wrong count.
 */
export function controlledUnet<T>(ops: Ops<T>, c: UNetConfig, x: T, tEmb: T, context: T, control: readonly T[] | null, onlyMidControl: boolean): T {
  const l = unetArch(c);
  const p = UNET_PREFIX;
  if (control && control.length !== l.input.length + 1) {
    throw new Error(`controlledUnet: ${control.length} control tensors, the config needs ${l.input.length + 1}`);
  }
  const embAct = ops.silu(timeEmbed(ops, p, tEmb));
  const hs = encoder(ops, p, c, l, x, embAct, context, null);
  let h = middle(ops, p, c, l, hs[hs.length - 1], embAct, context);
  if (control) h = ops.add(h, control[control.length - 1]);
  l.output.forEach((b, i) => {
    const k = hs.length - 1 - i;
    const skip = control && (!onlyMidControl || i < 3) ? ops.add(hs[k], control[k]) : hs[k];
    const q = `${p}output_blocks.${i}`;
    h = resBlock(ops, `${q}.0`, ops.concatChannels([h, skip]), embAct, b.inCh, b.outCh);
    if (b.attn) h = spatialTransformer(ops, `${q}.1`, h, context, b.attn, c.transformer_depth);
    if (b.up) h = upsample(ops, `${q}.${b.attn ? 2 : 1}`, h);
  });
  h = ops.silu(ops.groupNorm(h, 32, `${p}out.0.weight`, `${p}out.0.bias`, 1e-5));
  return conv3(ops, h, `${p}out.2`);
}

/**
 * The hint block (`input_hint_block`): eight 3x3 convs with SiLU between, strides 2 at the 3rd,
 * 5th and 7th (official, `downsample` 8; the 3rd and 5th for 4; the 3rd for 2), the last one
 * zero-initialised. It depends on the hint only (not on x or t), so a reconstruction computes it
 * once for all its DDIM steps.
 * @param hint the guiding image `[N, hint_channels, downsample*h, downsample*w]` (image convention
 *   of the official data loader: ImageNet-normalised RGB).
 * @param downsample `hint_downsample` of the config (8 for the official kl-f8 latents).
 * @returns the guided hint `[N, model_channels, h, w]`.
 */
export function hintBlock<T>(ops: Ops<T>, hint: T, downsample: 2 | 4 | 8 = 8): T {
  const strided = [2, 4, 6].slice(0, Math.log2(downsample));
  let g = hint;
  for (let i = 0; i < 8; i++) {
    g = conv3(ops, g, `${SGN_PREFIX}input_hint_block.${2 * i}`, strided.includes(i) ? 2 : 1);
    if (i < 7) g = ops.silu(g);
  }
  return g;
}

/**
 * SemanticGuidedNetwork.forward: the control tensors.
 * Encoder copy with the guided hint added after `input_blocks.0`; a zero conv per block output;
 * SFF: `outs[8+k] = SiLU(outs[8+k] + down1k(outs[6]) + down2k(outs[7]) + down3k(outs[8]))`
 * for k = 1..3, each `downjk` a bias-free 3x3 stride-2 conv, InstanceNorm (eps 1e-5, no affine)
 * and SiLU; the middle block's output through `middle_block_out` last.
 * @param guidedHint output of {@link hintBlock}.
 * @returns one map per input block plus the middle one (13 for the official architecture), widths
 *   and sizes of the matching UNet skips.
 */
export function semanticGuidedNetwork<T>(ops: Ops<T>, c: SGNConfig, x: T, guidedHint: T, tEmb: T, context: T): T[] {
  checkSgnConfig(c);
  const u = c.unet;
  const l = unetArch(u);
  const p = SGN_PREFIX;
  const embAct = ops.silu(timeEmbed(ops, p, tEmb));
  const hs = encoder(ops, p, u, l, x, embAct, context, guidedHint);
  const outs = hs.map((h, i) => conv1(ops, h, `${p}zero_convs.${i}.0`));
  if (c.sff) {
    const down = (j: number, k: number): T => ops.silu(ops.instanceNorm(conv3(ops, outs[SFF_SOURCES[j - 1]], `${p}down${j}${k}.0`, 2, false), 1e-5));
    for (let k = 1; k <= 3; k++) {
      const t = SFF_TARGETS[k - 1];
      outs[t] = ops.silu(ops.add(ops.add(ops.add(outs[t], down(1, k)), down(2, k)), down(3, k)));
    }
  }
  const h = middle(ops, p, u, l, hs[hs.length - 1], embAct, context);
  outs.push(conv1(ops, h, `${p}middle_block_out.0`));
  return outs;
}
