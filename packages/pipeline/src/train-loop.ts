/**
 * The resumable training loop every `diad fit` stage runs: deterministic batches per step, a
 * checkpoint (weights + optimiser state) every `checkpointEvery` steps, a NaN guard, Ctrl-C
 * handling and a progress display. Because the batch and the noise of step `s` depend only on the
 * seed and `s`, a resumed run continues exactly as an uninterrupted one would.
 */
import type { SafetensorsFile, WritableTensor } from '@diad/core';
import type { StageConfig } from './config.js';
import type { RunDir, StageName, StageState } from './run-dir.js';
import { Progress } from './progress.js';
import { stageLr } from './trainers.js';

/** What a stage trains: one optimiser step, and its full state to save and restore. */
export interface StageTrainer {
  /**
   * Runs one optimiser step on the batch of step `step`.
   * @returns the loss before the update (the loop stops on a non-finite value).
   */
  step(step: number): Promise<number>;
  /** Weights and optimiser state, keyed by official names (optimiser slots under their own prefix). */
  state(): Promise<Record<string, WritableTensor>>;
  /** Restores what {@link state} saved. */
  load(file: SafetensorsFile): Promise<void>;
  /** Images per step (for images/s; read after each step, so it may change between steps). */
  readonly batchSize: number;
  /** The learning rate of update `t` (1-based) where it is not the stage config's ({@link stageLr}): a phased trainer's. */
  learningRate?(t: number): number;
}

/** A stage stopped on a NaN or infinite loss. */
export class NanLossError extends Error {
  /** @param step steps completed before the failing one (the failing step is number `step + 1`). */
  constructor(
    readonly stage: StageName,
    readonly step: number,
    readonly lastCheckpoint: string | null,
    loss: number,
  ) {
    super(
      `stage ${stage}: loss is ${loss} at step ${step + 1}; training stopped. ` +
        (lastCheckpoint
          ? `The last good checkpoint is ${lastCheckpoint} (the stage state still names it, so \`diad fit --resume\` restarts from it); lower the learning rate to get past this step.`
          : 'No checkpoint was written yet; lower the learning rate and start again.'),
    );
  }
}

/** Thrown (after the checkpoint is saved) when the run was interrupted by SIGINT/SIGTERM. */
export class InterruptedError extends Error {}

let interrupted = false;
let inStage = false;
let handlersInstalled = false;
/** Installs SIGINT/SIGTERM handlers that let the current step finish and save before exiting. */
export function installInterruptHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const onSignal = (sig: string) => {
    // Outside a training loop, or on a second Ctrl-C, leave now: every file is written atomically
    // and the stage states name the last checkpoint, so the run resumes from there (the lock of
    // a dead process is taken over).
    if (interrupted || !inStage) {
      process.stderr.write(
        `\n${sig}: stopped outside a training step; run the same command again (or \`diad fit --resume\` on the run folder) to resume from the last checkpoint\n`,
      );
      process.exit(130);
    }
    interrupted = true;
    process.stderr.write(`\n${sig}: finishing the current step and saving a checkpoint (press again to quit at once)\n`);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
}

export interface StageOptions {
  quiet?: boolean;
  /**
   * Runs after each checkpoint is saved (e.g. validation); its time is not counted as training time.
   * A resumed stage calls it again for the checkpoint it resumes from, so an evaluation an interrupt cut short is made up.
   */
  afterCheckpoint?: (state: StageState) => Promise<void>;
}

/**
 * Runs (or resumes) a stage to its configured step count.
 * @returns the final stage state (done).
 * @throws NanLossError on a non-finite loss; InterruptedError after a signal (checkpoint saved).
 */
export async function runStage(run: RunDir, stage: StageName, cfg: StageConfig, trainer: StageTrainer, opts: StageOptions = {}): Promise<StageState> {
  let state: StageState = (await run.readStage(stage)) ?? {
    stage,
    step: 0,
    totalSteps: cfg.steps,
    checkpoint: null,
    done: false,
    seconds: 0,
    imagesPerSecond: 0,
    losses: [],
  };
  if (state.done) return state;
  if (state.checkpoint) await trainer.load(await run.loadCheckpoint(stage));
  if (state.checkpoint) await opts.afterCheckpoint?.(state);
  const progress = new Progress(`stage ${STAGE_LABEL[stage]}`, cfg.steps, state.step, opts.quiet);
  let t0 = Date.now();
  const earlierSeconds = state.seconds;
  let sessionImages = 0;
  let sumLoss = 0;
  let nLoss = 0;
  const lrOf = trainer.learningRate ? (t: number) => trainer.learningRate!(t) : stageLr(cfg);
  inStage = true;
  try {
    while (state.step < cfg.steps) {
      const loss = await trainer.step(state.step);
      if (!Number.isFinite(loss)) throw new NanLossError(stage, state.step, state.checkpoint ? run.path(state.checkpoint) : null, loss);
      sumLoss += loss;
      nLoss++;
      sessionImages += trainer.batchSize;
      const seconds = (Date.now() - t0) / 1000;
      const ips = sessionImages / Math.max(seconds, 1e-9);
      state = { ...state, step: state.step + 1, imagesPerSecond: ips };
      const lr = lrOf(state.step);
      progress.update(state.step, { loss, ips, lr });
      const last = state.step === cfg.steps;
      if (last || state.step % cfg.checkpointEvery === 0 || interrupted) {
        state.losses = [...state.losses, { step: state.step, loss: sumLoss / nLoss, lr }];
        sumLoss = nLoss = 0;
        const seconds = earlierSeconds + (Date.now() - t0) / 1000;
        state = await run.saveCheckpoint({ ...state, done: last, seconds }, await trainer.state());
        if (opts.afterCheckpoint && !interrupted) {
          const th = Date.now();
          progress.pause();
          await opts.afterCheckpoint(state);
          progress.resume();
          t0 += Date.now() - th;
        }
        if (interrupted && !last)
          throw new InterruptedError(`interrupted during stage ${stage} at step ${state.step}; checkpoint saved, run the same command again to resume`);
      }
    }
  } finally {
    inStage = false;
    progress.stop();
  }
  return state;
}

const STAGE_LABEL: Record<StageName, string> = { autoencoder: '1/3 autoencoder', diffusion: '2/3 latent diffusion', sg: '3/3 SG network' };
