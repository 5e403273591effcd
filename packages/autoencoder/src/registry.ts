/**
 * The autoencoders by `kind`, as a run config names them (`models.autoencoder.kind`, default `kl`):
 * everything the pipeline needs of a first stage it trains, runs and exports, behind one object.
 * `kl` is LDM's AutoencoderKL (this package). Another autoencoder is one file implementing
 * {@link AutoencoderKind} plus one `autoencoders.register(kind, entry)` call.
 */
import { Registry, type Autoencoder, type HostTensor, type Ops, type ParamSpec } from '@diad/core';
import type { ParamStore } from '@diad/core/tfjs';
import type { TrainingGraph } from '@diad/core/onnx';
import { downsampleFactor, parseAutoencoderConfig, SCALE_FACTOR, type AutoencoderConfig } from './config.js';
import { paramSpec } from './params.js';
import { autoencoderLoss } from './loss.js';
import { recordAutoencoderTraining } from './train-graph.js';
import { tfjsAutoencoder } from './tfjs.js';
import type { AutoencoderOnnxFiles } from '@diad/core/ort';
import { exportAutoencoderOnnx } from './onnx.js';

/** Host parameters by official name. */
type Params = Record<string, HostTensor<'float32'>>;

/** An autoencoder family: config, parameters, training loss and graph, and its stage on each engine. */
// biome-ignore lint/suspicious/noExplicitAny: each kind has its own config type; the registry holds them all.
export interface AutoencoderKind<C = any> {
  /**
   * Validates the config (the run config's `models.autoencoder`, `kind` removed).
   * @throws Error naming `source` and each invalid field.
   */
  parse(value: unknown, source: string): C;
  /** Spatial factor image -> latent. */
  downsampleFactor(cfg: C): number;
  /** Channels of the latents. */
  latentChannels(cfg: C): number;
  /** Latent scale factor of the exported graphs and stages. */
  scaleFactor: number;
  /** Every parameter (official names, shapes, inits) under `prefix`. */
  paramSpec(cfg: C, prefix: string): ParamSpec[];
  /**
   * The scalar training loss over any `Ops`.
   * @param images `[N, 3, H, W]` (image convention); `noise` standard normal of the latent shape.
   */
  loss<T>(ops: Ops<T>, cfg: C, images: T, noise: T, o: { klWeight: number; prefix: string }): T;
  /** The same loss as an ONNX training graph (parameters as inputs, `images` and `noise` inputs). */
  recordTraining(
    cfg: C,
    params: Params,
    o: { batch: number; height: number; width: number; klWeight: number; prefix: string; lossScale: number },
  ): TrainingGraph;
  /** The inference stage on tfjs over a parameter store. */
  tfjs(store: ParamStore, cfg: C): Autoencoder;
  /** Writes the inference graphs (encode, decode) for `height` x `width` images into `dir`. */
  exportOnnx(dir: string, cfg: C, params: Params, o: { height: number; width: number; metadata?: Record<string, string> }): Promise<AutoencoderOnnxFiles>;
  /** The inference stage on onnxruntime sessions of {@link exportOnnx}'s files. */
  openOnnx(files: AutoencoderOnnxFiles, cfg: C): Promise<Autoencoder & { release(): Promise<void> }>;
}

/** The autoencoder kinds. */
export const autoencoders = new Registry<AutoencoderKind>('autoencoder');

/** LDM's AutoencoderKL (`ldm/models/autoencoder.py`), DiAD's first stage. */
export const KL_AUTOENCODER: AutoencoderKind<AutoencoderConfig> = {
  parse: (value, source) => parseAutoencoderConfig(value, source),
  downsampleFactor,
  latentChannels: (cfg) => cfg.embed_dim,
  scaleFactor: SCALE_FACTOR,
  paramSpec,
  loss: (ops, cfg, images, noise, o) => autoencoderLoss(ops, cfg, images, noise, o).loss,
  recordTraining: (cfg, params, o) => recordAutoencoderTraining(cfg, params, o),
  tfjs: (store, cfg) => tfjsAutoencoder(store, cfg),
  exportOnnx: (dir, cfg, params, o) => exportAutoencoderOnnx(dir, cfg, params, { ...o, scaleFactor: SCALE_FACTOR }),
  // onnxruntime-node loads here, not when the package is imported.
  openOnnx: async (files, cfg) =>
    (await import('@diad/core/ort')).OrtAutoencoder.open(files, { latentChannels: cfg.embed_dim, downsampleFactor: downsampleFactor(cfg) }),
};
autoencoders.register('kl', KL_AUTOENCODER);

/** The run config's autoencoder: its kind (default `kl`) and its parsed config. */
export interface ConfiguredAutoencoder {
  kind: AutoencoderKind;
  config: unknown;
}

/**
 * Looks up and parses an autoencoder config `{ kind?, ...config }`.
 * @param source the config field it came from (named in errors).
 * @throws Error for an unknown kind (listing the registered ones) or an invalid config.
 */
export function configuredAutoencoder(value: { kind?: unknown } & Record<string, unknown>, source: string): ConfiguredAutoencoder {
  const { kind = 'kl', ...config } = value;
  const entry = autoencoders.get(String(kind), `${source}.kind`);
  return { kind: entry, config: entry.parse(config, source) };
}
