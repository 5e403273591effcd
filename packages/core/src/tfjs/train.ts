/**
 * Engine-side training utilities shared by the autoencoder and SG-network trainers: AdamW,
 * linear learning-rate warm-up, gradient accumulation over micro-batches, global-norm clipping, a
 * NaN/Inf guard, and atomic checkpoints with a config hash.
 *
 * Works on a `Record<string, tf.Variable>` of trainable variables keyed by official state-dict
 * names and a loss closure per micro-batch; frozen parameters are simply not in the record.
 * The official trainers (ControlNet/DiAD `cldm.py`, LDM `autoencoder.py`) use
 * `torch.optim.AdamW`; this follows its update exactly.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { readSafetensors, writeSafetensors } from '../safetensors.js';
import { tensor, type HostTensor } from '../tensor.js';
import { adamWDefaults, adamWLr, clipCoefficient, nonFiniteGradientError, nonFiniteLossError, type AdamWOptions, type StepResult } from '../adamw.js';
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

  /** @throws Error on a non-positive learning rate or betas outside [0, 1). */
  constructor(options: AdamWOptions) {
    this.options = adamWDefaults(options);
  }

  /** Learning rate of update `t` (1-based), after warm-up. */
  lrAt(t: number): number {
    return adamWLr(this.options, t);
  }

  /**
   * Applies one update to `variables` from `grads` (same names; names without a gradient are skipped).
   * @returns the learning rate used.
   */
  apply(variables: Record<string, tf.Variable>, grads: Record<string, tf.Tensor>): number {
    const t = ++this.step;
    const lr = this.lrAt(t);
    const { betas: [b1, b2], eps, weightDecay } = this.options;
    const stepSize = lr / (1 - b1 ** t);
    const bc2Sqrt = Math.sqrt(1 - b2 ** t);
    for (const [name, g] of Object.entries(grads)) {
      const p = variables[name];
      if (!p) throw new Error(`AdamW: gradient for "${name}" has no variable`);
      const m = this.state(this.expAvg, name, p);
      const v = this.state(this.expAvgSq, name, p);
      tf.tidy(() => {
        const decayed = weightDecay ? tf.mul(p, 1 - lr * weightDecay) : p;
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

/** Canonical JSON (object keys sorted at every level) of a config. */
function canonical(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonical).join(',')}]`;
  if (x && typeof x === 'object') {
    return `{${Object.keys(x).sort().map((k) => `${JSON.stringify(k)}:${canonical((x as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(x) ?? 'null';
}

/** A short stable hash (16 hex digits of SHA-256 over canonical JSON) of a training config. */
export function configHash(config: unknown): string {
  return createHash('sha256').update(canonical(config)).digest('hex').slice(0, 16);
}

/** Options of {@link Trainer}. */
export interface TrainerOptions {
  optimizer: AdamWOptions;
  /** Clip gradients to this global L2 norm (`torch.nn.utils.clip_grad_norm_`); none when absent. */
  clipGradNorm?: number;
  /** The run's configuration (model, data, optimizer...): hashed into checkpoints, resume refuses another. */
  config: unknown;
}

/** Host conversion of a parameter for checkpoints (e.g. engine layout to the official one). */
export type ExportParam = (name: string, value: tf.Tensor) => HostTensor<'float32'> | Promise<HostTensor<'float32'>>;
/** The inverse of {@link ExportParam}: a host tensor from a checkpoint to the variable's engine layout. */
export type ImportParam = (name: string, value: HostTensor<'float32'>, variable: tf.Variable) => tf.Tensor;

const rawExport: ExportParam = async (_name, t) => tensor((await t.data()) as Float32Array, t.shape);
const rawImport: ImportParam = (_name, h) => tf.tensor(h.data, [...h.shape]);

/** The optimizer file that goes with a checkpoint: `x.safetensors` -> `x.optim.safetensors`. */
export function optimizerPath(path: string): string {
  return path.endsWith('.safetensors') ? `${path.slice(0, -'.safetensors'.length)}.optim.safetensors` : `${path}.optim.safetensors`;
}

/**
 * A training loop's engine side: accumulation, clipping, the NaN guard, AdamW, checkpoints.
 * The caller owns the variables (disposes them); {@link dispose} frees the optimizer state.
 */
export class Trainer {
  readonly optimizer: AdamW;
  readonly configHash: string;
  private readonly configJson: string;

  /**
   * @param variables the trainable variables by official name (everything else stays frozen).
   * @throws Error when there are no variables.
   */
  constructor(readonly variables: Record<string, tf.Variable>, readonly options: TrainerOptions) {
    if (Object.keys(variables).length === 0) throw new Error('Trainer: no trainable variables');
    this.optimizer = new AdamW(options.optimizer);
    this.configJson = canonical(options.config);
    this.configHash = configHash(options.config);
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
    const free = () => Object.values(sum).forEach((t) => t.dispose());
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

  /**
   * Saves a checkpoint atomically: the parameters to `path` (a plain safetensors weights file keyed
   * by name, loadable on its own) and the optimizer state to {@link optimizerPath}(path), both with
   * `step` and `config_hash` metadata. The optimizer file is written first; a crash between the two
   * writes leaves files with different steps, which {@link resume} detects.
   * @param opts.params parameters to save (default the trainable variables; pass every model
   *   parameter for a complete weights file). @param opts.exportParam layout conversion (default: as stored).
   */
  async save(path: string, opts: { params?: Record<string, tf.Tensor>; exportParam?: ExportParam } = {}): Promise<void> {
    const meta = { format: 'diad-checkpoint/1', step: String(this.step), config_hash: this.configHash, config: this.configJson };
    const state: Record<string, HostTensor<'float32'>> = {};
    for (const [n, t] of Object.entries(this.optimizer.stateTensors())) state[n] = await rawExport(n, t);
    await writeSafetensors(optimizerPath(path), state, { ...meta, format: 'diad-optimizer/1', optimizer: canonical(this.optimizer.options) });
    const exp = opts.exportParam ?? rawExport;
    const params: Record<string, HostTensor<'float32'>> = {};
    for (const [n, t] of Object.entries(opts.params ?? this.variables)) params[n] = await exp(n, t);
    await writeSafetensors(path, params, meta);
  }

  /**
   * Restores parameters, optimizer state and step from a checkpoint written by {@link save}.
   * @param opts.params variables to restore (default the trainable ones); each must be in the file.
   * @throws Error, changing nothing, when the files are missing, the config hash differs from this
   *   run's (listing the differing config keys), the two files disagree on the step (an
   *   interrupted save), or a parameter is missing or mis-shaped.
   */
  async resume(path: string, opts: { params?: Record<string, tf.Variable>; importParam?: ImportParam } = {}): Promise<void> {
    const [pf, of] = await Promise.all([readSafetensors(path), readSafetensors(optimizerPath(path))]);
    const hash = pf.metadata.config_hash;
    if (pf.metadata.format !== 'diad-checkpoint/1' || of.metadata.format !== 'diad-optimizer/1') {
      throw new Error(`${path}: not a diad training checkpoint (metadata format ${pf.metadata.format ?? 'absent'}); use the weights loader for plain weight files`);
    }
    if (hash !== this.configHash) {
      throw new Error(
        `refusing to resume from ${path}: it was written with config hash ${hash}, this run's config hashes to ${this.configHash} ` +
          `(differing keys: ${diffKeys(pf.metadata.config, this.configJson)}). Resume with the checkpoint's config, or start a new run with another checkpoint path`,
      );
    }
    if (pf.metadata.step !== of.metadata.step) {
      throw new Error(`${path} is at step ${pf.metadata.step} but ${optimizerPath(path)} at step ${of.metadata.step}: the save was interrupted; use an earlier checkpoint`);
    }
    const targets = opts.params ?? this.variables;
    const imp = opts.importParam ?? rawImport;
    const missing = Object.keys(targets).filter((n) => !pf.has(n));
    if (missing.length) throw new Error(`${path} lacks parameters: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ` and ${missing.length - 10} more` : ''}`);
    const values: [tf.Variable, tf.Tensor][] = [];
    try {
      for (const [n, v] of Object.entries(targets)) {
        const t = imp(n, pf.float32(n), v);
        values.push([v, t]);
        if (t.shape.join(',') !== v.shape.join(',')) {
          throw new Error(`${path}: parameter "${n}" loads as shape [${t.shape.join(', ')}], the variable is [${v.shape.join(', ')}]`);
        }
      }
      const state: Record<string, HostTensor<'float32'>> = {};
      for (const n of of.names()) state[n] = of.float32(n);
      this.optimizer.loadState(Number(pf.metadata.step), state, this.variables);
    } catch (e) {
      for (const [, t] of values) t.dispose();
      throw e;
    }
    for (const [v, t] of values) {
      v.assign(t);
      t.dispose();
    }
  }

  /** Frees the optimizer state. */
  dispose(): void {
    this.optimizer.dispose();
  }
}

function diffKeys(savedJson: string | undefined, currentJson: string): string {
  if (!savedJson) return 'unknown, the checkpoint has no config';
  const a = JSON.parse(savedJson) as Record<string, unknown>;
  const b = JSON.parse(currentJson) as Record<string, unknown>;
  if (!a || !b || typeof a !== 'object' || typeof b !== 'object') return 'the whole config';
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => canonical(a[k]) !== canonical(b[k]));
  return keys.length ? keys.join(', ') : 'none at top level';
}
