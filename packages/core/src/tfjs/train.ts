/**
 * Engine-side training utilities of the tfjs stage trainer: AdamW, linear learning-rate warm-up,
 * gradient accumulation over micro-batches, global-norm clipping and a NaN/Inf guard.
 *
 * Works on a `Record<string, tf.Variable>` of trainable variables keyed by official state-dict
 * names and a loss closure per micro-batch; frozen parameters are simply not in the record.
 * The official trainers (ControlNet/DiAD `cldm.py`, LDM `autoencoder.py`) use
 * `torch.optim.AdamW`; this follows its update exactly.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { HostTensor } from '../tensor.js';
import {
  adamWDefaults,
  adamWLr,
  adamWStep,
  clipCoefficient,
  nonFiniteGradientError,
  nonFiniteLossError,
  type AdamWOptions,
  type StepResult,
} from '../adamw.js';
import { assertGradientsRegistered } from './engine.js';
import { installConv2DGradOverride } from './conv-grad.js';

/**
 * AdamW on tfjs variables with `torch.optim.AdamW` semantics (torch/optim/adamw.py, single-tensor path), per update t:
 * `p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;`
 * `p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
 * State (`exp_avg`, `exp_avg_sq`) is kept per variable name and created on a variable's first
 * gradient; a variable without a gradient in an update is left alone, as PyTorch skips `grad is None`.
 */
export class AdamW {
  readonly options: Required<AdamWOptions>;
  /** Updates applied so far (PyTorch's `step`). */
  step = 0;
  private readonly expAvg = new Map<string, tf.Variable>();
  private readonly expAvgSq = new Map<string, tf.Variable>();

  /** @throws Error on a non-positive learning rate, betas outside [0, 1), or a bad `decaySteps` ({@link adamWDefaults}). */
  constructor(options: AdamWOptions) {
    this.options = adamWDefaults(options);
  }

  /** Learning rate of update `t` (1-based): warm-up and decay applied. */
  lrAt(t: number): number {
    return adamWLr(this.options, t);
  }

  /**
   * Applies one update to `variables` from `grads` (same names; names without a gradient are skipped).
   * @returns the learning rate used.
   */
  apply(variables: Record<string, tf.Variable>, grads: Record<string, tf.Tensor>): number {
    const { lr, b1, b2, eps, decay, stepSize, bc2Sqrt } = adamWStep(this.options, ++this.step);
    for (const [name, g] of Object.entries(grads)) {
      const p = variables[name];
      if (!p) throw new Error(`AdamW: gradient for "${name}" has no variable`);
      const m = this.state(this.expAvg, name, p);
      const v = this.state(this.expAvgSq, name, p);
      tf.tidy(() => {
        const decayed = decay !== 1 ? tf.mul(p, decay) : p;
        const m1 = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const v1 = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        const denom = tf.add(tf.div(tf.sqrt(v1), bc2Sqrt), eps);
        p.assign(tf.sub(decayed, tf.mul(tf.div(m1, denom), stepSize)));
        m.assign(m1);
        v.assign(v1);
      });
    }
    return lr;
  }

  private state(map: Map<string, tf.Variable>, name: string, p: tf.Variable): tf.Variable {
    let s = map.get(name);
    if (!s) {
      const z = tf.zerosLike(p);
      s = tf.variable(z, false);
      z.dispose();
      map.set(name, s);
    }
    return s;
  }

  /** The optimizer state as tensors named `exp_avg.<name>` / `exp_avg_sq.<name>` (not copies). */
  stateTensors(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [n, s] of this.expAvg) out[`exp_avg.${n}`] = s;
    for (const [n, s] of this.expAvgSq) out[`exp_avg_sq.${n}`] = s;
    return out;
  }

  /**
   * Restores the state written by {@link stateTensors} (engine layout, shapes of the variables).
   * @throws Error naming a state tensor whose variable is unknown or whose shape differs.
   */
  loadState(step: number, state: Record<string, HostTensor<'float32'>>, variables: Record<string, tf.Variable>): void {
    const entries = Object.entries(state).map(([key, h]) => {
      const dot = key.indexOf('.');
      const kind = key.slice(0, dot);
      const name = key.slice(dot + 1);
      const p = variables[name];
      if ((kind !== 'exp_avg' && kind !== 'exp_avg_sq') || !p) throw new Error(`optimizer state "${key}" matches no trainable variable`);
      if (h.shape.join(',') !== p.shape.join(',')) {
        throw new Error(`optimizer state "${key}" has shape [${h.shape.join(', ')}], variable has [${p.shape.join(', ')}]`);
      }
      return { map: kind === 'exp_avg' ? this.expAvg : this.expAvgSq, name, h };
    });
    this.dispose();
    for (const { map, name, h } of entries) {
      const t = tf.tensor(h.data, [...h.shape]);
      map.set(name, tf.variable(t, false));
      t.dispose();
    }
    this.step = step;
  }

  /** Frees the state tensors. */
  dispose(): void {
    for (const s of [...this.expAvg.values(), ...this.expAvgSq.values()]) s.dispose();
    this.expAvg.clear();
    this.expAvgSq.clear();
  }
}

/** Options of {@link Trainer}. */
export interface TrainerOptions {
  optimizer: AdamWOptions;
  /** Clip gradients to this global L2 norm (`torch.nn.utils.clip_grad_norm_`); none when absent. */
  clipGradNorm?: number;
}

/**
 * A training loop's engine side: accumulation, clipping, the NaN guard, AdamW. Checkpoints are
 * core's one training format (`trainingCheckpoint`), written by the caller from
 * `optimizer.stateTensors()` and the parameters.
 * The caller owns the variables (disposes them); {@link dispose} frees the optimizer state.
 */
export class Trainer {
  readonly optimizer: AdamW;

  /**
   * @param variables the trainable variables by official name (everything else stays frozen).
   * @throws Error when there are no variables.
   */
  constructor(
    readonly variables: Record<string, tf.Variable>,
    readonly options: TrainerOptions,
  ) {
    if (Object.keys(variables).length === 0) throw new Error('Trainer: no trainable variables');
    this.optimizer = new AdamW(options.optimizer);
  }

  /** Updates applied so far. */
  get step(): number {
    return this.optimizer.step;
  }

  /**
   * One update from gradients accumulated over micro-batches: each closure computes the mean loss
   * of one micro-batch; the gradient is the mean over closures, so k equal micro-batches give the
   * gradient of one batch k times as large. Then optional clipping and an AdamW update.
   * @throws Error naming the step, the micro-batch and the value when a loss or the gradient norm
   *   is NaN or infinite; the variables are then left unchanged.
   */
  async trainStep(microBatches: ReadonlyArray<() => tf.Scalar>): Promise<StepResult> {
    if (microBatches.length === 0) throw new Error('trainStep: no micro-batches');
    assertGradientsRegistered();
    if (tf.getBackend() === 'wasm') installConv2DGradOverride();
    const step = this.step + 1;
    const names = Object.keys(this.variables);
    const list = names.map((n) => this.variables[n]);
    // variableGrads keys gradients by tfjs's variable name, not ours.
    const byTfName = new Map<string, string>(names.map((n) => [this.variables[n].name, n]));
    const sum: Record<string, tf.Tensor> = {};
    const free = () => tf.dispose(Object.values(sum));
    let lossSum = 0;
    try {
      for (let i = 0; i < microBatches.length; i++) {
        const { value, grads } = tf.variableGrads(microBatches[i], list);
        const loss = (await value.data())[0];
        value.dispose();
        for (const [id, g] of Object.entries(grads)) {
          const name = byTfName.get(id)!;
          if (sum[name]) {
            const s = tf.add(sum[name], g);
            sum[name].dispose();
            g.dispose();
            sum[name] = s;
          } else sum[name] = g;
        }
        if (!Number.isFinite(loss)) {
          throw nonFiniteLossError(loss, step, i + 1, microBatches.length);
        }
        lossSum += loss;
      }
      const k = microBatches.length;
      if (k > 1) {
        for (const n of Object.keys(sum)) {
          const s = tf.div(sum[n], k);
          sum[n].dispose();
          sum[n] = s;
        }
      }
      const sq = tf.tidy(() => tf.addN(Object.values(sum).map((g) => tf.sum(tf.square(g)))));
      const gradNorm = Math.sqrt((await sq.data())[0]);
      sq.dispose();
      const loss = lossSum / k;
      if (!Number.isFinite(gradNorm)) {
        throw nonFiniteGradientError(gradNorm, step, loss);
      }
      const coef = clipCoefficient(gradNorm, this.options.clipGradNorm);
      const clipped = coef !== null;
      if (coef !== null) {
        for (const n of Object.keys(sum)) {
          const s = tf.mul(sum[n], coef);
          sum[n].dispose();
          sum[n] = s;
        }
      }
      const lr = this.optimizer.apply(this.variables, sum);
      return { step, loss, lr, gradNorm, clipped };
    } finally {
      free();
    }
  }

  /** Frees the optimizer state. */
  dispose(): void {
    this.optimizer.dispose();
  }
}
