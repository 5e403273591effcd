/**
 * ONNX export of the DiAD denoiser: the same `hintBlock`, `semanticGuidedNetwork` and
 * `controlledUnet` code recorded with core's `OnnxRecorderOps` (no second definition of the
 * networks), weights as initializers keyed by official names.
 *
 * Two graphs, so the test-time DDIM loop runs the hint block once per image, not once per step:
 * - `hint.onnx`: input `hint` `[N, hint_channels, f*h, f*w]` (f = `hint_downsample`) (the image), output `guided_hint`
 *   `[N, model_channels, h, w]` (ControlNet `input_hint_block`).
 * - `step.onnx`: one eps-prediction (SG network + controlled UNet, `only_mid_control` from the
 *   config): inputs `latent` `[N, in_channels, h, w]`, `guided_hint`, `timestep` `[N]` (int32 in [0, T);
 *   the sinusoidal embedding, `timestep_embedding` of `ldm/modules/diffusionmodules/util.py`, is
 *   looked up in the graph), `context` `[N, L, D]`;
 *   output `eps` `[N, out_channels, h, w]`.
 * The batch axis is dynamic (`N`); the latent size is fixed at export.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tensor, type HostTensor } from '@diad/core';
import type { DenoiserOnnxFiles } from '@diad/core/ort';
import { OnnxRecorderOps, type Sym } from '@diad/core/onnx';
import { sgnConfigOf, type DiadConfig, type SGNConfig, type UNetConfig } from './config.js';
import { LEARNED_CONTEXT } from './context.js';
import { timestepEmbedding } from './layers.js';
import { controlledUnet, hintBlock, semanticGuidedNetwork } from './model.js';

/** Options of the denoiser exports. */
export interface DenoiserOnnxOptions {
  /** Latent height and width (the hint is 8x). */
  latentHeight: number;
  latentWidth: number;
  /** Context tokens L of the `context` input. */
  contextTokens: number;
  /** Diffusion timesteps T: the `timestep` input takes integers in [0, T). Default 1000. */
  numTimesteps?: number;
  /** Extra `metadata_props` (preset, version, ...). */
  metadata?: Record<string, string>;
}

type Params = Readonly<Record<string, HostTensor<'float32'>>>;

/** A recorded model: the serialised ModelProto and its FLOPs per batch item (convs, linears, attention). */
export interface RecordedModel {
  bytes: Uint8Array;
  flopsPerItem: number;
}

/**
 * `timestep_embedding(t, dim)` in the graph as a `Gather` from the table of every integer timestep,
 * made with the host {@link timestepEmbedding}: bit-identical to the tfjs path (float32 `Sin`/`Cos`
 * of arguments up to ~1000 rad in the graph were off by ~1e-3 relative in eps).
 */
function timestepEmbeddingGraph(rec: OnnxRecorderOps, t: Sym, dim: number, numTimesteps: number): Sym {
  const table = rec.input(
    timestepEmbedding(
      Array.from({ length: numTimesteps }, (_, i) => i),
      dim,
    ),
  );
  return rec.custom('Gather', [table, t], [t.shape[0], dim], { axis: 0 });
}

interface Recording {
  rec: OnnxRecorderOps;
  outputs: Record<string, Sym>;
}

function hintRecording(sgn: SGNConfig, params: Params, o: DenoiserOnnxOptions): Recording {
  const rec = new OnnxRecorderOps(params, { graphName: 'diad_hint', metadata: { ...o.metadata, diad_part: 'hint', sgn_config: JSON.stringify(sgn) } });
  const f = sgn.hint_downsample;
  const hint = rec.graphInput('hint', [1, sgn.hint_channels, f * o.latentHeight, f * o.latentWidth]);
  return { rec, outputs: { guided_hint: hintBlock(rec, hint, f) } };
}

function stepRecording(unet: UNetConfig, sgn: SGNConfig, onlyMidControl: boolean, params: Params, o: DenoiserOnnxOptions): Recording {
  const rec = new OnnxRecorderOps(params, {
    graphName: 'diad_step',
    metadata: { ...o.metadata, diad_part: 'step', sgn_config: JSON.stringify(sgn), only_mid_control: String(onlyMidControl) },
  });
  const [h, w] = [o.latentHeight, o.latentWidth];
  const latent = rec.graphInput('latent', [1, unet.in_channels, h, w]);
  const guided = rec.graphInput('guided_hint', [1, unet.model_channels, h, w]);
  const tEmb = timestepEmbeddingGraph(rec, rec.graphInput('timestep', [1], true, 'int32'), unet.model_channels, o.numTimesteps ?? 1000);
  const context = rec.graphInput('context', [1, o.contextTokens, unet.context_dim]);
  const control = semanticGuidedNetwork(rec, sgn, latent, guided, tEmb, context);
  return { rec, outputs: { eps: controlledUnet(rec, unet, latent, tEmb, context, control, onlyMidControl) } };
}

/**
 * The cross-attention context `[n, L, D]` on the host: the learned one (`learned_context.weight`
 * `[D, L]`, applied to the identity as `contextFor` does: row i is column i of the weight) or the
 * file constant `[1, L, D]` repeated.
 * @throws Error when the learned weight or the constant is missing.
 */
export function hostContext(config: DiadConfig, params: Params, constant: HostTensor | null, n: number): HostTensor<'float32'> {
  let one: Float32Array;
  let L: number;
  const D = config.unet.context_dim;
  if (config.context.kind !== 'learned') {
    if (!constant) throw new Error('hostContext: a file context needs the constant tensor (readConstantContext)');
    one = constant.data as Float32Array;
    L = constant.shape[1];
  } else {
    const w = params[LEARNED_CONTEXT];
    if (!w) throw new Error(`hostContext: parameter ${LEARNED_CONTEXT} is missing`);
    L = config.context.tokens;
    one = new Float32Array(L * D);
    for (let i = 0; i < L; i++) for (let d = 0; d < D; d++) one[i * D + d] = w.data[d * L + i];
  }
  const out = new Float32Array(n * L * D);
  for (let b = 0; b < n; b++) out.set(one, b * L * D);
  return tensor(out, [n, L, D]);
}

/** Paths of an exported denoiser, and FLOPs per image of one hint-block and one step run. */
export interface DenoiserOnnxExport extends DenoiserOnnxFiles {
  flopsPerImage: { hint: number; step: number };
}

/**
 * Writes `hint.onnx` and `step.onnx` of a DiAD denoiser into `dir` (created if absent; files
 * written atomically). Weights past 1.5 GiB (the `sd15` sizes) go to ONNX external data
 * (`step.onnx.data` beside the model; keep the two files together).
 * @param params every parameter by official name (e.g. `DiadDenoiser.store.toHost()`).
 */
export async function exportDenoiserOnnx(dir: string, config: DiadConfig, params: Params, o: DenoiserOnnxOptions): Promise<DenoiserOnnxExport> {
  await mkdir(dir, { recursive: true });
  const sgn = sgnConfigOf(config);
  const files = { hint: join(dir, 'hint.onnx'), step: join(dir, 'step.onnx') };
  const metadata = { ...o.metadata, diad_config: JSON.stringify(config) };
  const hint = hintRecording(sgn, params, { ...o, metadata });
  await hint.rec.writeModel(files.hint, hint.outputs);
  const step = stepRecording(config.unet, sgn, config.only_mid_control, params, { ...o, metadata });
  await step.rec.writeModel(files.step, step.outputs);
  return { ...files, flopsPerImage: { hint: hint.rec.flops, step: step.rec.flops } };
}
