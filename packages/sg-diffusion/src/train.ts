/**
 * Training of the DiAD denoiser (LDM `ldm/models/diffusion/ddpm.py` p_losses with DiAD's
 * `configure_optimizers`, `sgn/sgn.py`): eps-prediction MSE, `t` uniform in [0, T-1],
 * `x_t = q_sample(z, t, eps)`; only the trainable groups receive gradients (SG network with SFF,
 * UNet output blocks and `out`). AdamW (weight decay 0.01), accumulation, the NaN guard and the
 * atomic checkpoints are core's `Trainer` (`@diad/core/tfjs`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng, tensor, type AdamWOptions, type HostTensor, type StepResult } from '@diad/core';
import { engineTensor, officialHost, Trainer } from '@diad/core/tfjs';
import type { DiadDenoiser, TrainableGroups } from './denoiser.js';
import { DiffusionSchedule } from './schedule.js';
import { timestepEmbedding } from './layers.js';
import { denoiserEps, epsLoss } from './loss.js';

export interface DiadTrainerOptions {
  /** AdamW hyper-parameters (official: lr 1e-5, weight decay 0.01); `warmupSteps` for a linear warm-up. */
  optimizer: AdamWOptions;
  /** Which parameters train (default `official`). */
  groups?: TrainableGroups;
  /** Optional global gradient-norm clipping. */
  clipGradNorm?: number;
  /** Seed of the timesteps and noise; update k draws from stream k, so a resumed run continues the same sequence. */
  seed?: number;
  schedule?: DiffusionSchedule;
}

/** One micro-batch: latents `[N, C, h, w]` and their guiding images `[N, 3, f*h, f*w]` (f = `hint_downsample`) (image convention). */
export interface TrainBatch {
  latents: HostTensor;
  hint: HostTensor;
}


/**
 * Trains a {@link DiadDenoiser}. Frozen parameters are not handed to the optimizer, so they stay
 * bit-identical; checkpoints hold every parameter in the official layout (loadable with
 * `DiadDenoiser.load`) plus the optimizer state beside them.
 */
export class DiadTrainer {
  readonly trainer: Trainer;
  readonly schedule: DiffusionSchedule;
  private readonly seed: number;

  /** @param runConfig the run's configuration, hashed into checkpoints (resume refuses another). */
  constructor(
    readonly denoiser: DiadDenoiser,
    options: DiadTrainerOptions,
    runConfig: unknown = { model: denoiser.config, optimizer: options.optimizer, groups: options.groups ?? 'official' },
  ) {
    this.schedule = options.schedule ?? new DiffusionSchedule();
    this.seed = options.seed ?? 0;
    const vars = denoiser.setTrainable(options.groups ?? 'official');
    const names = denoiser.store.trainableNames();
    this.trainer = new Trainer(Object.fromEntries(names.map((n, i) => [n, vars[i]])), {
      optimizer: { weightDecay: 0.01, ...options.optimizer },
      clipGradNorm: options.clipGradNorm,
      config: runConfig,
    });
  }

  /** Names of the parameters that train. */
  get trainableNames(): string[] {
    return Object.keys(this.trainer.variables);
  }

  /** Updates done so far. */
  get step(): number {
    return this.trainer.step;
  }

  /**
   * The eps-MSE closure of one micro-batch for given timesteps and noise (mean over all elements,
   * as LDM `loss_simple` with `l_simple_weight` 1 and no learned log-variance).
   * @throws Error when the batch sizes of latents, hint, t and noise disagree.
   */
  lossFn(batch: TrainBatch, t: readonly number[], noise: HostTensor): () => tf.Scalar {
    const d = this.denoiser;
    const n = batch.latents.shape[0];
    if (batch.hint.shape[0] !== n || t.length !== n) throw new Error(`batch: ${n} latents, ${batch.hint.shape[0]} hint images, ${t.length} timesteps`);
    const xt = this.schedule.qSample(batch.latents, t, noise);
    const tEmb = timestepEmbedding(t, d.config.unet.model_channels);
    return () => {
      const ops = d.ops;
      return epsLoss(ops, denoiserEps(ops, d.config, ops.input(xt), ops.input(batch.hint), ops.input(tEmb), d.context(n)), ops.input(noise)) as tf.Scalar;
    };
  }

  /**
   * One optimizer update from the given micro-batches (their gradients averaged): draws t uniform
   * in [0, T-1] and Gaussian noise per item.
   * @throws Error (weights untouched) when a loss or the gradient is not finite.
   */
  async trainStep(microBatches: readonly TrainBatch[]): Promise<StepResult> {
    const rng = new Rng(this.seed, this.trainer.step + 1);
    const fns = microBatches.map((b) => {
      const t = Array.from({ length: b.latents.shape[0] }, () => rng.int(0, this.schedule.numTimesteps - 1));
      return this.lossFn(b, t, tensor(rng.normals(b.latents.data.length), b.latents.shape, b.latents.layout));
    });
    return this.trainer.trainStep(fns);
  }

  /** Saves every parameter (official layout) and the optimizer state, atomically. */
  save(path: string): Promise<void> {
    const store = this.denoiser.store;
    return this.trainer.save(path, {
      params: Object.fromEntries(store.names().map((n) => [n, store.get(n)])),
      exportParam: (_n, t) => officialHost(t),
    });
  }

  /** Restores every parameter, the optimizer state and the step from {@link save}'s files. */
  resume(path: string): Promise<void> {
    const store = this.denoiser.store;
    return this.trainer.resume(path, {
      params: Object.fromEntries(store.names().map((n) => [n, store.get(n)])),
      importParam: (_n, h) => engineTensor(h.data, h.shape),
    });
  }

  dispose(): void {
    this.trainer.dispose();
  }
}
