/**
 * ONNX export of the AutoencoderKL: the same `encodeMoments` / `decodeLatent` code recorded with
 * core's `OnnxRecorderOps` (no second definition of the network), weights as initializers.
 * The primitive graphs below; {@link exportAutoencoderOnnx} writes the stage graphs that
 * core's `OrtAutoencoder` (`@diad/core/ort`) runs.
 *
 * - encoder graph: input `image` `[N, in_channels, H, W]` (pixels in [-1, 1]), output `moments`
 *   `[N, 2 embed_dim, H/f, W/f]` (mean channels first, then the unclamped log-variance).
 * - decoder graph: input `latent` `[N, embed_dim, H/f, W/f]` (unscaled: divide the diffusion
 *   latent by the scale factor first), output `image` `[N, out_ch, H, W]`.
 * The batch axis is dynamic (`N`); the spatial size is fixed at export.
 */
import type { HostTensor } from '@diad/core';
import type { AutoencoderOnnxFiles } from '@diad/core/ort';
import { OnnxRecorderOps } from '@diad/core/onnx';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { downsampleFactor, SCALE_FACTOR, type AutoencoderConfig } from './config.js';
import { posterior, samplePosterior } from './distribution.js';
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
  if (o.height % f !== 0 || o.width % f !== 0)
    throw new Error(`autoencoder ONNX export: ${o.height}x${o.width} is not a multiple of the downsampling factor ${f}`);
  const rec = new OnnxRecorderOps(params, { graphName: 'autoencoder_decoder', metadata: meta(cfg, o, 'autoencoder_decoder') });
  const latent = rec.graphInput('latent', [1, cfg.embed_dim, o.height / f, o.width / f]);
  return rec.toModel({ image: decodeLatent(rec, cfg, latent, o.prefix ?? DEFAULT_PREFIX) });
}

/** Options of the stage export: the primitive options plus the latent scale factor. */
export interface AutoencoderStageOnnxOptions extends AutoencoderOnnxOptions {
  /** Latent scale factor baked into the graphs. Default 0.18215 (the official `scale_factor`). */
  scaleFactor?: number;
}

/**
 * Writes the autoencoder as the pipeline stage sees it (core's `Autoencoder`, pixel range
 * `imagenet` as the official DiAD) into `dir` (created if absent; files written atomically):
 * - `autoencoder_encode.onnx`: inputs `image` `[N, in_channels, H, W]` and `noise`
 *   `[N, embed_dim, H/f, W/f]`, output `latent` = scale_factor * (mean + exp(logvar / 2) * noise)
 *   (zeros for the posterior mode), the same `posterior` / `samplePosterior` code as the stage;
 * - `autoencoder_decode.onnx`: input `latent` (scaled), output `image` = decoder(latent / scale_factor).
 */
export async function exportAutoencoderOnnx(
  dir: string,
  cfg: AutoencoderConfig,
  params: Record<string, HostTensor<'float32'>>,
  o: AutoencoderStageOnnxOptions,
): Promise<AutoencoderOnnxFiles> {
  const f = downsampleFactor(cfg);
  if (o.height % f !== 0 || o.width % f !== 0)
    throw new Error(`autoencoder ONNX export: ${o.height}x${o.width} is not a multiple of the downsampling factor ${f}`);
  const sf = o.scaleFactor ?? SCALE_FACTOR;
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  const latentShape = [1, cfg.embed_dim, o.height / f, o.width / f];
  const metadata = (part: string) => ({ ...meta(cfg, o, part), scale_factor: String(sf), pixel_range: 'imagenet' });
  await mkdir(dir, { recursive: true });
  const files = { encode: join(dir, 'autoencoder_encode.onnx'), decode: join(dir, 'autoencoder_decode.onnx') };

  const enc = new OnnxRecorderOps(params, { graphName: 'autoencoder_encode', metadata: metadata('autoencoder_encode') });
  const p = posterior(enc, encodeMoments(enc, cfg, enc.graphInput('image', [1, cfg.ddconfig.in_channels, o.height, o.width]), prefix));
  await enc.writeModel(files.encode, { latent: enc.scale(samplePosterior(enc, p, enc.graphInput('noise', latentShape)), sf) });

  const dec = new OnnxRecorderOps(params, { graphName: 'autoencoder_decode', metadata: metadata('autoencoder_decode') });
  await dec.writeModel(files.decode, { image: decodeLatent(dec, cfg, dec.scale(dec.graphInput('latent', latentShape), 1 / sf), prefix) });
  return files;
}
