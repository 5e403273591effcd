/**
 * Engine-free pieces of training shared by every engine: AdamW on host arrays (the optimizer of
 * the onnxruntime trainer) and what one training step reports. The official trainers (ControlNet /
 * DiAD `cldm.py`, LDM `autoencoder.py`) use `torch.optim.AdamW`; this follows its update exactly.
 */
import { tensor, type HostTensor } from './tensor.js';

/** Hyper-parameters of AdamW (PyTorch names and defaults, weight decay 0.01). */
export interface AdamWOptions {
  /** Peak learning rate. */
  lr: number;
  /** `[beta1, beta2]`, default `[0.9, 0.999]`. */
  betas?: [number, number];
  /** Added to the denominator, default 1e-8. */
  eps?: number;
  /** Decoupled weight decay, default 0.01 (applied as `p *= 1 - lr * weightDecay`). */
  weightDecay?: number;
  /** Linear warm-up: update `t` (1-based) uses `lr * min(1, t / warmupSteps)`; 0 (default) = none. */
  warmupSteps?: number;
  /**
   * Cosine decay over `decaySteps` updates (`torch.optim.lr_scheduler.CosineAnnealingLR` with
   * `T_max = decaySteps`, `eta_min = 0`, stepped once per update): update `t` (1-based) uses
   * `lr * (1 + cos(pi * min(t - 1, decaySteps) / decaySteps)) / 2` (times the warm-up factor), so the
   * last of the `decaySteps` updates uses `lr * (1 - cos(pi / decaySteps)) / 2` and any later one 0
   * (torch's would rise again). 0 (default) = constant, as the official trainers.
   */
  decaySteps?: number;
}

/** What one optimizer update did. */
export interface StepResult {
  /** 1-based index of this update. */
  step: number;
  /** Mean of the micro-batch losses. */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Global L2 norm of the accumulated gradient before clipping. */
  gradNorm: number;
  clipped: boolean;
}

/** The NaN guard's error for a micro-batch loss that is NaN or infinite (nothing was updated). */
export function nonFiniteLossError(loss: number, step: number, microBatch: number, of: number): Error {
  return new Error(
    `non-finite loss ${loss} at step ${step} (micro-batch ${microBatch} of ${of}); parameters not updated. Lower the learning rate, check the inputs, or resume from the last checkpoint`,
  );
}

/** The NaN guard's error for a gradient norm that is NaN or infinite (nothing was updated). */
export function nonFiniteGradientError(gradNorm: number, step: number, loss: number): Error {
  return new Error(
    `non-finite gradient norm ${gradNorm} at step ${step} (loss ${loss}); parameters not updated. Lower the learning rate or enable clipGradNorm, or resume from the last checkpoint`,
  );
}

/** `torch.nn.utils.clip_grad_norm_`'s factor for a gradient of norm `gradNorm` (null when no clipping applies). */
export function clipCoefficient(gradNorm: number, maxNorm: number | undefined): number | null {
  return maxNorm !== undefined && gradNorm > maxNorm ? maxNorm / (gradNorm + 1e-6) : null;
}

/**
 * The options with PyTorch's defaults filled in.
 * @throws Error on a non-positive learning rate, betas outside [0, 1), or a `decaySteps` that is not an integer >= 0.
 */
export function adamWDefaults(options: AdamWOptions): Required<AdamWOptions> {
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as AdamWOptions;
  const o = { betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01, warmupSteps: 0, decaySteps: 0, ...given };
  if (!(o.lr > 0)) throw new Error(`AdamW: learning rate must be > 0, got ${o.lr}`);
  if (!o.betas.every((b) => b >= 0 && b < 1)) throw new Error(`AdamW: betas must be in [0, 1), got [${o.betas.join(', ')}]`);
  if (!(Number.isInteger(o.decaySteps) && o.decaySteps >= 0)) throw new Error(`AdamW: decaySteps must be an integer >= 0, got ${o.decaySteps}`);
  return o;
}

/** Learning rate of update `t` (1-based): the peak times the linear warm-up and the cosine decay factors. */
export function adamWLr(o: Required<AdamWOptions>, t: number): number {
  const warm = o.warmupSteps > 0 ? Math.min(1, t / o.warmupSteps) : 1;
  const decay = o.decaySteps > 0 ? (1 + Math.cos((Math.PI * Math.min(t - 1, o.decaySteps)) / o.decaySteps)) / 2 : 1;
  return o.lr * warm * decay;
}

/** The scalars of AdamW update `t` (1-based), the same on every engine. */
export interface AdamWStep {
  lr: number;
  b1: number;
  b2: number;
  eps: number;
  /** `1 - lr * weightDecay`, the decoupled decay factor. */
  decay: number;
  /** `lr / (1 - b1^t)`. */
  stepSize: number;
  /** `sqrt(1 - b2^t)`. */
  bc2Sqrt: number;
}

/** The scalars of AdamW update `t` (torch's bias corrections and decoupled weight decay). */
export function adamWStep(o: Required<AdamWOptions>, t: number): AdamWStep {
  const lr = adamWLr(o, t);
  const [b1, b2] = o.betas;
  return { lr, b1, b2, eps: o.eps, decay: 1 - lr * o.weightDecay, stepSize: lr / (1 - b1 ** t), bc2Sqrt: Math.sqrt(1 - b2 ** t) };
}

/**
 * AdamW with `torch.optim.AdamW` semantics (torch/optim/adamw.py) on Float32Arrays, per update t:
 * `p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;`
 * `p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`, in float64 arithmetic rounded
 * to float32 on store (torch rounds every operation to float32: the results agree to float32
 * rounding, and this loop runs twice as fast as one rounding each operation). State (`exp_avg`,
 * `exp_avg_sq`) is created on a parameter's first gradient; a parameter without a gradient in an
 * update is left alone (no weight decay either), as PyTorch skips `grad is None`.
 */
export class HostAdamW {
  readonly options: Required<AdamWOptions>;
  /** Updates applied so far (PyTorch's `step`). */
  step = 0;
  private readonly expAvg = new Map<string, Float32Array>();
  private readonly expAvgSq = new Map<string, Float32Array>();

  /** @throws Error on a non-positive learning rate, betas outside [0, 1), or a bad `decaySteps` ({@link adamWDefaults}). */
  constructor(options: AdamWOptions) {
    this.options = adamWDefaults(options);
  }

  /**
   * Applies one update in place.
   * @param params parameter values by name (modified).
   * @param grads gradients by name, same lengths; names absent here are skipped.
   * @returns the learning rate used.
   * @throws Error when a gradient has no parameter or another length.
   */
  apply(params: Record<string, Float32Array>, grads: Record<string, Float32Array>): number {
    const { lr, b1, b2, eps, decay, stepSize, bc2Sqrt } = adamWStep(this.options, ++this.step);
    const invBc2 = 1 / bc2Sqrt;
    for (const [name, g] of Object.entries(grads)) {
      const p = params[name];
      if (!p) throw new Error(`AdamW: gradient for "${name}" has no parameter`);
      if (p.length !== g.length) throw new Error(`AdamW: gradient for "${name}" has ${g.length} elements, the parameter ${p.length}`);
      const m = slot(this.expAvg, name, p.length);
      const v = slot(this.expAvgSq, name, p.length);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        const mi = (m[i] = m[i] + (1 - b1) * (gi - m[i]));
        const vi = (v[i] = v[i] * b2 + (1 - b2) * gi * gi);
        p[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) * invBc2 + eps);
      }
    }
    return lr;
  }

  /** The state as host tensors `exp_avg.<name>` / `exp_avg_sq.<name>` shaped like `shapes[name]` (not copies). */
  stateTensors(shapes: Record<string, readonly number[]>): Record<string, HostTensor<'float32'>> {
    const out: Record<string, HostTensor<'float32'>> = {};
    for (const [n, s] of this.expAvg) out[`exp_avg.${n}`] = tensor(s, shapes[n] ?? [s.length]);
    for (const [n, s] of this.expAvgSq) out[`exp_avg_sq.${n}`] = tensor(s, shapes[n] ?? [s.length]);
    return out;
  }

  /**
   * Restores the state written by {@link stateTensors}.
   * @param sizes element count of every parameter that may have state.
   * @throws Error naming a state tensor whose parameter is unknown or whose size differs; nothing changes then.
   */
  loadState(step: number, state: Record<string, HostTensor<'float32'>>, sizes: Record<string, number>): void {
    const entries = Object.entries(state).map(([key, h]) => {
      const dot = key.indexOf('.');
      const kind = key.slice(0, dot);
      const name = key.slice(dot + 1);
      if ((kind !== 'exp_avg' && kind !== 'exp_avg_sq') || sizes[name] === undefined)
        throw new Error(`optimizer state "${key}" matches no trainable parameter`);
      if (h.data.length !== sizes[name]) throw new Error(`optimizer state "${key}" has ${h.data.length} elements, the parameter ${sizes[name]}`);
      return { map: kind === 'exp_avg' ? this.expAvg : this.expAvgSq, name, data: h.data.slice() };
    });
    this.expAvg.clear();
    this.expAvgSq.clear();
    for (const { map, name, data } of entries) map.set(name, data);
    this.step = step;
  }
}

function slot(map: Map<string, Float32Array>, name: string, n: number): Float32Array {
  let s = map.get(name);
  if (!s) {
    s = new Float32Array(n);
    map.set(name, s);
  }
  return s;
}
