/**
 * The stage trainers of `diad fit`, one per engine, over one engine-free description of a stage's
 * training problem: its model's parameters, which of them train, the batch of step `s` (named host
 * tensors drawn from `Rng(seed, stream + s)`, so a resumed stage repeats exactly what an
 * uninterrupted one would do) and its loss, written once in the packages against `Ops`
 * (`autoencoderLoss`, `denoiserEps` + `epsLoss`). The tfjs trainer differentiates that loss with
 * `tf.variableGrads`; the ort trainer runs the package's training graph (the same loss recorded and
 * differentiated). Checkpoints are core's one training format (`trainingCheckpoint`) on both engines.
 */
import type * as tf from '@tensorflow/tfjs-core';
import {
  adamWDefaults,
  adamWLr,
  encodeSafetensors,
  readOptimizerState,
  SafetensorsFile,
  tensor,
  trainingCheckpoint,
  type HostTensor,
  type WritableTensor,
} from '@diad/core';
import { engineTensor, officialHost, Trainer, TfjsOps, type ParamStore } from '@diad/core/tfjs';
import type { TrainingGraph } from '@diad/core/onnx';
import { denoiserEps, epsLoss, hostContext, recordDenoiserTraining, type DiadConfig, type DiadDenoiser } from '@diad/sg-diffusion';
import type { StageConfig } from './config.js';
import type { StageName } from './run-dir.js';
import type { StageTrainer } from './train-loop.js';

/** A stage trainer that owns engine memory. */
export type DisposableTrainer = StageTrainer & { dispose(): void };

/** A stage's batch of one step: named host tensors (the input names of its training graph). */
export type StageBatch = Record<string, HostTensor>;

/** One stage's training problem, engine-free. */
export interface StageProblem {
  stage: StageName;
  cfg: StageConfig;
  /** Every parameter of the stage's model (official layout): the initial values and what checkpoints hold. */
  store: ParamStore;
  trainable: (name: string) => boolean;
  batchOf(step: number): StageBatch;
  /** The scalar loss on tfjs tensors of a batch (the packages' loss code through TfjsOps). */
  tfjsLoss(ops: TfjsOps, batch: Record<string, tf.Tensor>): tf.Tensor;
  /** The package's training graph of the same loss, for the stage's batch shapes (ort). */
  graph(params: Record<string, HostTensor<'float32'>>): TrainingGraph;
}

const optimizerOf = (cfg: StageConfig) => ({
  lr: cfg.lr,
  betas: cfg.betas,
  weightDecay: cfg.weightDecay ?? 0.01,
  decaySteps: cfg.lrSchedule === 'cosine' ? cfg.steps : 0,
});

/**
 * The learning rate of the stage's update `t` (1-based), as both engines' AdamW applies it
 * (`lrSchedule` included).
 * @throws Error on bad AdamW options ({@link adamWDefaults}).
 */
export function stageLr(cfg: StageConfig): (t: number) => number {
  const o = adamWDefaults(optimizerOf(cfg));
  return (t) => adamWLr(o, t);
}

/** The micro-batches of optimiser step `step`: `accumulate` consecutive batches of the problem's stream. */
function microBatches(p: StageProblem, step: number): StageBatch[] {
  const k = p.cfg.accumulate ?? 1;
  return Array.from({ length: k }, (_, i) => p.batchOf(step * k + i));
}

/** core's tfjs `Trainer` over the stage's `ParamStore`, differentiating `tfjsLoss`. */
export function tfjsStageTrainer(p: StageProblem): DisposableTrainer {
  const { store, cfg, stage } = p;
  store.setTrainable(() => true, false);
  store.setTrainable(p.trainable, true);
  const names = store.names(p.trainable);
  const variables = Object.fromEntries(names.map((n) => [n, store.get(n)]));
  const ops = new TfjsOps(store);
  const trainer = new Trainer(variables, { optimizer: optimizerOf(cfg) });
  return {
    batchSize: cfg.batchSize * (cfg.accumulate ?? 1),
    async step(step: number): Promise<number> {
      const losses = microBatches(p, step).map(
        (batch) => () => p.tfjsLoss(ops, Object.fromEntries(Object.entries(batch).map(([k, v]) => [k, ops.input(v)]))) as tf.Scalar,
      );
      try {
        return (await trainer.trainStep(losses)).loss;
      } catch (e) {
        // The trainers refuse non-finite losses/gradients before updating; the loop reports the step.
        if (/non-finite/.test((e as Error).message)) return NaN;
        throw e;
      }
    },
    async state(): Promise<Record<string, WritableTensor>> {
      // Optimizer slots in the official layout, like the parameters: the ort trainer reads them too.
      const state: Record<string, HostTensor<'float32'>> = {};
      for (const [n, t] of Object.entries(trainer.optimizer.stateTensors())) state[n] = await officialHost(t);
      return trainingCheckpoint(await store.toHost(), state, trainer.optimizer.step);
    },
    async load(file: SafetensorsFile): Promise<void> {
      const report = store.load(file, { strict: false });
      if (report.missing.length) throw damaged(file, stage, report.missing);
      const { step, state } = readOptimizerState(file);
      const engine: Record<string, HostTensor<'float32'>> = {};
      for (const [n, h] of Object.entries(state)) {
        const t = engineTensor(h.data, h.shape);
        engine[n] = tensor((await t.data()) as Float32Array, t.shape);
        t.dispose();
      }
      trainer.optimizer.loadState(step, engine, variables);
    },
    dispose(): void {
      trainer.dispose();
      store.dispose();
    },
  };
}

/** core's `OrtTrainer` on the stage's training graph: parameters on the host, fed every step. */
export async function ortStageTrainer(p: StageProblem, providers: readonly string[] | undefined): Promise<DisposableTrainer & { providers: string }> {
  const { OrtTrainer } = await import('@diad/core/ort');
  const params = await p.store.toHost();
  p.store.dispose();
  const trainer = await OrtTrainer.open(p.graph(params), params, { optimizer: optimizerOf(p.cfg), providers, label: `stage ${p.stage} training graph` });
  return {
    batchSize: p.cfg.batchSize * (p.cfg.accumulate ?? 1),
    providers: [trainer.providers.join(', '), ...trainer.session.skipped.map((k) => `skipped ${k.provider}: ${k.reason}`)].join('; '),
    async step(step: number): Promise<number> {
      try {
        return (await trainer.trainStep(microBatches(p, step))).loss;
      } catch (e) {
        if (/non-finite/.test((e as Error).message)) return NaN;
        throw e;
      }
    },
    async state(): Promise<Record<string, WritableTensor>> {
      return trainingCheckpoint({ ...params, ...trainer.params }, trainer.optimizerState(), trainer.step);
    },
    async load(file: SafetensorsFile): Promise<void> {
      const missing = Object.keys(params).filter((n) => !file.has(n));
      if (missing.length) throw damaged(file, p.stage, missing);
      const loaded: Record<string, HostTensor<'float32'>> = {};
      for (const n of Object.keys(params)) loaded[n] = file.float32(n);
      const { step, state } = readOptimizerState(file);
      trainer.restore(step, loaded, state);
      for (const [n, t] of Object.entries(loaded)) if (!trainer.params[n]) params[n] = t;
    },
    dispose(): void {
      void trainer.release();
    },
  };
}

/** One phase of a {@link phasedTrainer}: the steps from `from` on, by the trainer `open` makes. */
export interface TrainerPhase {
  from: number;
  batchSize: number;
  /** The learning rate of update `t` (1-based) as the phase's optimiser applies it ({@link stageLr}). */
  lr: (t: number) => number;
  open(): Promise<DisposableTrainer>;
}

/**
 * A stage trained in phases with different batch shapes (a training graph each), e.g. stage 1 on
 * crops and then on whole images. A phase's trainer is opened when its first step comes and gets
 * the weights and optimiser state of the phase before (so Adam's moments and update count carry
 * on); a resumed stage opens the phase of its checkpoint's step.
 * @param phases by ascending `from`, the first from 0.
 */
export function phasedTrainer(phases: readonly TrainerPhase[]): DisposableTrainer {
  if (!phases.length || phases[0].from !== 0) throw new Error('phasedTrainer: the first phase must start at step 0');
  let current: { index: number; trainer: DisposableTrainer } | null = null;
  const phaseOf = (step: number) => phases.findLastIndex((p) => step >= p.from);
  /** The trainer of phase `index`, loaded with `file` or else with the state of the phase before. */
  const enter = async (index: number, file?: SafetensorsFile): Promise<DisposableTrainer> => {
    if (current?.index === index) {
      if (file) await current.trainer.load(file);
      return current.trainer;
    }
    const carried =
      file ?? (current ? new SafetensorsFile(encodeSafetensors(await current.trainer.state()), `phase ${current.index + 1} handover`) : undefined);
    current?.trainer.dispose();
    current = null;
    const trainer = await phases[index].open();
    try {
      if (carried) await trainer.load(carried);
    } catch (e) {
      trainer.dispose();
      throw e;
    }
    current = { index, trainer };
    return trainer;
  };
  let batchSize = phases[0].batchSize;
  return {
    get batchSize() {
      return batchSize;
    },
    async step(step: number): Promise<number> {
      const index = phaseOf(step);
      batchSize = phases[index].batchSize;
      return (await enter(index)).step(step);
    },
    async state(): Promise<Record<string, WritableTensor>> {
      return (current?.trainer ?? (await enter(0))).state();
    },
    learningRate(t: number): number {
      return phases[phaseOf(t - 1)].lr(t);
    },
    async load(file: SafetensorsFile): Promise<void> {
      await enter(phaseOf(readOptimizerState(file).step), file);
    },
    dispose(): void {
      current?.trainer.dispose();
      current = null;
    },
  };
}

function damaged(file: SafetensorsFile, stage: StageName, missing: string[]): Error {
  return new Error(
    `${file.source}: checkpoint lacks ${missing.length} parameters of stage ${stage} (${missing.slice(0, 5).join(', ')}...); the run folder is damaged`,
  );
}

/**
 * Stages 2 and 3: eps-MSE of the plain UNet (`diffusion`) or of the SG network + UNet (`sg`,
 * batches with `hint`), over a denoiser's parameters.
 * @param batchOf the step's batch: `x_noisy`, `noise`, `t_emb` (and `hint` for `sg`).
 * @param latentSize side of the square latents.
 * @param constantContext a file context `[1, L, D]` (an input of every batch), or null for a learned one (a parameter).
 */
export function denoiserProblem(
  stage: 'diffusion' | 'sg',
  cfg: StageConfig,
  dCfg: DiadConfig,
  d: DiadDenoiser,
  trainable: (name: string) => boolean,
  batchOf: (step: number) => StageBatch,
  latentSize: number,
  constantContext: HostTensor | null,
): StageProblem {
  const guided = stage === 'sg';
  const context = constantContext ? hostContext(dCfg, {}, constantContext, cfg.batchSize) : null;
  return {
    stage,
    cfg,
    store: d.store,
    trainable,
    batchOf: (step) => (context ? { ...batchOf(step), context } : batchOf(step)),
    tfjsLoss: (ops, b) => epsLoss(ops, denoiserEps(ops, dCfg, b.x_noisy, guided ? b.hint : null, b.t_emb, b.context ?? d.context(cfg.batchSize)), b.noise),
    graph: (params) =>
      recordDenoiserTraining(dCfg, params, {
        batch: cfg.batchSize,
        latentHeight: latentSize,
        latentWidth: latentSize,
        guided,
        trainable,
        contextTokens: context?.shape[1],
      }),
  };
}
