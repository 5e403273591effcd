/**
 * ONNX export of the AutoencoderKL: the same `encodeMoments` / `decodeLatent` code recorded with
 * core's `OnnxRecorderOps` (no second definition of the network), weights as initializers.
 *
 * - encoder graph: input `image` `[N, in_channels, H, W]` (pixels in [-1, 1]), output `moments`
 *   `[N, 2 embed_dim, H/f, W/f]` (mean channels first, then the unclamped log-variance).
 * - decoder graph: input `latent` `[N, embed_dim, H/f, W/f]` (unscaled: divide the diffusion
 *   latent by the scale factor first), output `image` `[N, out_ch, H, W]`.
 * The batch axis is dynamic (`N`); the spatial size is fixed at export.
 */
import { writeFileAtomic, type HostTensor } from '@diad/core';
import { OnnxRecorderOps } from '@diad/core/onnx';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { downsampleFactor, type AutoencoderConfig } from './config.js';
import { decodeLatent, encodeMoments } from './model.js';
import { DEFAULT_PREFIX } from './params.js';

/** Options of the autoencoder exports. */
export interface AutoencoderOnnxOptions {
  /** Image height and width in pixels (multiples of the downsampling factor). */
  height: number;
  width: number;
  /** State-dict prefix of the parameters. Default `first_stage_model.`. */
  prefix?: string;
  /** Extra `metadata_props` (e.g. preset, version). */
  metadata?: Record<string, string>;
}

function meta(cfg: AutoencoderConfig, o: AutoencoderOnnxOptions, part: string): Record<string, string> {
  return { ...o.metadata, diad_part: part, autoencoder_config: JSON.stringify(cfg) };
}

/**
 * Records the encoder (+ `quant_conv`) as an ONNX model.
 * @param params parameters by official name (official layout), e.g. `ParamStore.toHost()`.
 * @returns the serialised ModelProto.
 * @throws Error naming a missing parameter, or when the size is not a multiple of the factor.
 */
export function recordAutoencoderEncoder(cfg: AutoencoderConfig, params: Record<string, HostTensor<'float32'>>, o: AutoencoderOnnxOptions): Uint8Array {
  const rec = new OnnxRecorderOps(params, { graphName: 'autoencoder_encoder', metadata: meta(cfg, o, 'autoencoder_encoder') });
  const image = rec.graphInput('image', [1, cfg.ddconfig.in_channels, o.height, o.width]);
  return rec.toModel({ moments: encodeMoments(rec, cfg, image, o.prefix ?? DEFAULT_PREFIX) });
}

/**
 * Records `post_quant_conv` + the decoder as an ONNX model (input `latent`, unscaled).
 * @throws Error naming a missing parameter, or when the size is not a multiple of the factor.
 */
export function recordAutoencoderDecoder(cfg: AutoencoderConfig, params: Record<string, HostTensor<'float32'>>, o: AutoencoderOnnxOptions): Uint8Array {
  const f = downsampleFactor(cfg);
  if (o.height % f !== 0 || o.width % f !== 0) throw new Error(`autoencoder ONNX export: ${o.height}x${o.width} is not a multiple of the downsampling factor ${f}`);
  const rec = new OnnxRecorderOps(params, { graphName: 'autoencoder_decoder', metadata: meta(cfg, o, 'autoencoder_decoder') });
  const latent = rec.graphInput('latent', [1, cfg.embed_dim, o.height / f, o.width / f]);
  return rec.toModel({ image: decodeLatent(rec, cfg, latent, o.prefix ?? DEFAULT_PREFIX) });
}

/**
 * Writes `autoencoder_encoder.onnx` and `autoencoder_decoder.onnx` into `dir` (created if absent; files atomically).
 * @returns the two file paths.
 */
export async function exportAutoencoderOnnx(
  dir: string,
  cfg: AutoencoderConfig,
  params: Record<string, HostTensor<'float32'>>,
  o: AutoencoderOnnxOptions,
): Promise<{ encoder: string; decoder: string }> {
  await mkdir(dir, { recursive: true });
  const encoder = join(dir, 'autoencoder_encoder.onnx');
  const decoder = join(dir, 'autoencoder_decoder.onnx');
  await writeFileAtomic(encoder, recordAutoencoderEncoder(cfg, params, o));
  await writeFileAtomic(decoder, recordAutoencoderDecoder(cfg, params, o));
  return { encoder, decoder };
}
