/**
 * `OrtTrainer`: training on onnxruntime-node. A {@link TrainingGraph} (recorded from the model and
 * loss code written against `Ops`, differentiated by `appendBackward`) gives the loss and every
 * gradient in one run; the parameters live on the host in the official layout and are fed each
 * step; {@link HostAdamW} updates them. Gradient accumulation, global-norm clipping and the NaN
 * guard behave as the tfjs `Trainer`'s.
 */
import { clipCoefficient, HostAdamW, nonFiniteGradientError, nonFiniteLossError, type AdamWOptions, type StepResult } from '../adamw.js';
import type { TrainingGraph } from '../onnx/grad.js';
import type { DType, HostTensor } from '../tensor.js';
import { createOrtSession, type OrtSession, type OrtSessionOptions } from './session.js';

/** Options of {@link OrtTrainer.open}. */
export interface OrtTrainerOptions extends OrtSessionOptions {
  optimizer: AdamWOptions;
  /** Clip gradients to this global L2 norm (`torch.nn.utils.clip_grad_norm_`); none when absent. */
  clipGradNorm?: number;
  /** Names the graph in messages. */
  label?: string;
}

export class OrtTrainer {
  readonly optimizer: HostAdamW;

  private constructor(
    readonly session: OrtSession,
    readonly graph: TrainingGraph,
    /** Every parameter input, official layout; the trainable ones are updated in place. */
    readonly params: Record<string, HostTensor<'float32'>>,
    readonly options: OrtTrainerOptions,
  ) {
    this.optimizer = new HostAdamW(options.optimizer);
  }

  /**
   * Opens the training graph.
   * @param params a value for every parameter input of the graph (copied: the trainer owns its values).
   * @throws Error naming missing or mis-shaped parameters, or onnxruntime's error.
   */
  static async open(graph: TrainingGraph, params: Readonly<Record<string, HostTensor<'float32'>>>, options: OrtTrainerOptions): Promise<OrtTrainer> {
    const own: Record<string, HostTensor<'float32'>> = {};
    const missing = graph.params.filter((n) => !params[n]);
    if (missing.length)
      throw new Error(
        `OrtTrainer: no value for ${missing.length} parameters of the graph (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''})`,
      );
    for (const n of graph.params) own[n] = { ...params[n], data: params[n].data.slice() };
    // `extended`, not `all`: the CPU layout transforms of `all` (NCHWc convs) were as fast here but
    // moved gradients further from the official float32 ones (train_step parity).
    const session = await createOrtSession(graph.bytes, {
      providers: options.providers,
      threads: options.threads,
      graphOptimizationLevel: options.graphOptimizationLevel ?? 'extended',
      label: options.label ?? 'training graph',
    });
    return new OrtTrainer(session, graph, own, options);
  }

  /** Updates applied so far. */
  get step(): number {
    return this.optimizer.step;
  }

  /** Execution providers in use. */
  get providers(): readonly string[] {
    return this.session.providers;
  }

  /**
   * Loss and gradients of one micro-batch, without an update.
   * @param batch a tensor for every batch input of the graph.
   */
  async lossAndGrads(batch: Readonly<Record<string, HostTensor<DType>>>): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
    const out = await this.session.runTensors({ ...this.params, ...batch });
    const grads: Record<string, Float32Array> = {};
    for (const n of this.graph.trainable) grads[n] = out[`grad.${n}`].data as Float32Array;
    return { loss: (out.loss.data as Float32Array)[0], grads };
  }

  /**
   * One update from gradients accumulated over micro-batches (their mean), then optional clipping
   * and AdamW; parameters without a gradient stay untouched.
   * @throws Error naming the step, the micro-batch and the value when a loss or the gradient norm is
   *   NaN or infinite; the parameters are then left unchanged.
   */
  async trainStep(microBatches: readonly Readonly<Record<string, HostTensor<DType>>>[]): Promise<StepResult> {
    if (microBatches.length === 0) throw new Error('trainStep: no micro-batches');
    const step = this.step + 1;
    let sum: Record<string, Float32Array> | null = null;
    let lossSum = 0;
    for (let i = 0; i < microBatches.length; i++) {
      const { loss, grads } = await this.lossAndGrads(microBatches[i]);
      if (!Number.isFinite(loss)) {
        throw nonFiniteLossError(loss, step, i + 1, microBatches.length);
      }
      lossSum += loss;
      if (!sum) sum = grads;
      else for (const n of Object.keys(sum)) addInto(sum[n], grads[n]);
    }
    const k = microBatches.length;
    const g = sum!;
    let sq = 0;
    for (const n of Object.keys(g)) {
      const a = g[n];
      if (k > 1) for (let i = 0; i < a.length; i++) a[i] /= k;
      for (let i = 0; i < a.length; i++) sq += a[i] * a[i];
    }
    const gradNorm = Math.sqrt(sq);
    const loss = lossSum / k;
    if (!Number.isFinite(gradNorm)) {
      throw nonFiniteGradientError(gradNorm, step, loss);
    }
    const coef = clipCoefficient(gradNorm, this.options.clipGradNorm);
    const clipped = coef !== null;
    if (coef !== null) for (const a of Object.values(g)) for (let i = 0; i < a.length; i++) a[i] *= coef;
    const values = Object.fromEntries(this.graph.trainable.map((n) => [n, this.params[n].data]));
    const lr = this.optimizer.apply(values, g);
    return { step, loss, lr, gradNorm, clipped };
  }

  /** The optimizer state, `exp_avg.<name>` / `exp_avg_sq.<name>` in the parameters' shapes. */
  optimizerState(): Record<string, HostTensor<'float32'>> {
    return this.optimizer.stateTensors(Object.fromEntries(this.graph.trainable.map((n) => [n, this.params[n].shape])));
  }

  /**
   * Restores parameters and optimizer state (e.g. from a checkpoint).
   * @param params values for some or all parameters (official layout; shapes must match).
   * @throws Error naming a mis-shaped parameter or an unknown state tensor; nothing changes then.
   */
  restore(step: number, params: Readonly<Record<string, HostTensor<'float32'>>>, state: Record<string, HostTensor<'float32'>>): void {
    for (const [n, t] of Object.entries(params)) {
      const p = this.params[n];
      if (p && p.data.length !== t.data.length)
        throw new Error(`restore: parameter "${n}" has ${t.data.length} elements, the graph expects ${p.data.length} ([${p.shape.join(', ')}])`);
    }
    this.optimizer.loadState(step, state, Object.fromEntries(this.graph.trainable.map((n) => [n, this.params[n].data.length])));
    for (const [n, t] of Object.entries(params)) if (this.params[n]) this.params[n].data.set(t.data);
  }

  /** Frees the native session. */
  async release(): Promise<void> {
    await this.session.release();
  }
}

function addInto(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}
