/**
 * The AutoencoderKL on the tfjs engine: a `ParamStore` of official parameters, `TfjsOps` over it,
 * and the pipeline stage with `tf.tidy` scoping.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensors } from '@diad/core';
import { ParamStore, TfjsOps } from '@diad/core/tfjs';
import type { AutoencoderConfig } from './config.js';
import { DEFAULT_PREFIX, paramSpec } from './params.js';
import { AutoencoderKLStage, type AutoencoderStageOptions, type OpsScope } from './stage.js';

/** `tf.tidy` around a forward pass; the kept result is disposed after reading. */
export const tfjsScope: OpsScope<tf.Tensor> = {
  run: (fn) => tf.tidy(fn),
  dispose: (x) => x.dispose(),
};

/**
 * A fresh `ParamStore` holding every AutoencoderKL parameter, PyTorch-default initialised from
 * `seed` (see `paramSpec`).
 */
export function createAutoencoderParams(cfg: AutoencoderConfig, seed: number, prefix = DEFAULT_PREFIX): ParamStore {
  return ParamStore.create(paramSpec(cfg, prefix), seed);
}

/**
 * A `ParamStore` for `cfg` filled from a safetensors file with the official names under `prefix`
 * (a DiAD/ControlNet checkpoint converted to safetensors, or one saved by `saveCheckpoint`).
 * Other tensors in the file (UNet, control model, ...) are ignored.
 * @throws Error naming the file and listing missing and mis-shaped keys (and unexpected ones
 *   under the prefix) when the file does not match the config.
 */
export async function loadAutoencoderParams(path: string, cfg: AutoencoderConfig, prefix = DEFAULT_PREFIX): Promise<ParamStore> {
  const file = await readSafetensors(path);
  const store = ParamStore.create(paramSpec(cfg, prefix), 0);
  try {
    store.load(file, { prefix });
  } catch (e) {
    store.dispose();
    throw e;
  }
  return store;
}

/** The AutoencoderKL stage on tfjs over `store` (call `initTfjs()` first to pick the backend). */
export function tfjsAutoencoder(
  store: ParamStore,
  cfg: AutoencoderConfig,
  options: Omit<AutoencoderStageOptions<tf.Tensor>, 'scope'> = {},
): AutoencoderKLStage<tf.Tensor> {
  return new AutoencoderKLStage(new TfjsOps(store), cfg, { ...options, scope: tfjsScope });
}
