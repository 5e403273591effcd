/**
 * The diffusion schedule and DDIM, host-side (plain arrays, no engine): the "linear" schedule of
 * LDM (`ldm/modules/diffusionmodules/util.py` make_beta_schedule, which is linear in sqrt(beta):
 * the "scaled linear" of diffusers), `q_sample` (`ldm/models/diffusion/ddpm.py`), and DDIM
 * (`ldm/models/diffusion/ddim.py`, util.py make_ddim_timesteps / make_ddim_sampling_parameters).
 * Values are computed in float64 and rounded to float32 where the official code holds float32.
 */
import type { Rng } from './random.js';
import { tensor, type HostTensor } from './tensor.js';

export interface ScheduleOptions {
  /** Number of training timesteps T (official 1000). */
  numTimesteps?: number;
  /** beta_1 (official `linear_start` 0.00085). */
  linearStart?: number;
  /** beta_T (official `linear_end` 0.012). */
  linearEnd?: number;
}

/** The official schedule (LDM / Stable Diffusion `linear_start` 0.00085, `linear_end` 0.012, T 1000). */
export const OFFICIAL_SCHEDULE: Required<ScheduleOptions> = { numTimesteps: 1000, linearStart: 0.00085, linearEnd: 0.012 };

/** The DDIM sub-schedule for a number of steps: timesteps ascending, with their alphas and sigmas. */
export interface DdimSchedule {
  /** DDIM timesteps, ascending (`make_ddim_timesteps`, uniform: `range(0, T, T // S) + 1`). */
  timesteps: number[];
  /** alphas_cumprod at each DDIM timestep (float32 values). */
  alphas: number[];
  /** alphas_cumprod at the previous DDIM timestep (`alphas_cumprod[0]` for the first). */
  alphasPrev: number[];
  /** `eta * sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))`. */
  sigmas: number[];
}

/** Which DDIM timesteps a reconstruction from `x_T = q_sample(z, tStart)` visits. */
export type DdimStartSchedule = 'official' | 'partial';

const f32 = Math.fround;

/**
 * A small diffusers-style scheduler: the beta schedule, `qSample`, the DDIM sub-schedule and the
 * DDIM update. Timesteps are integers in [0, T-1].
 */
export class DiffusionSchedule {
  readonly numTimesteps: number;
  /** The options it was made with, defaults filled in. */
  readonly options: Required<ScheduleOptions>;
  /** betas, float32 values, length T. */
  readonly betas: Float64Array;
  /** Cumulative products of (1 - beta), float32 values, length T. */
  readonly alphasCumprod: Float64Array;
  private readonly sqrtAc: Float64Array;
  private readonly sqrt1mAc: Float64Array;

  /** @throws Error on a non-positive timestep count or betas outside (0, 1). */
  constructor(options: ScheduleOptions = {}) {
    const { numTimesteps: T, linearStart: lo, linearEnd: hi } = { ...OFFICIAL_SCHEDULE, ...options };
    if (!Number.isInteger(T) || T < 2) throw new Error(`numTimesteps must be an integer >= 2, got ${T}`);
    if (!(lo > 0 && hi < 1 && lo <= hi)) throw new Error(`need 0 < linearStart <= linearEnd < 1, got ${lo}, ${hi}`);
    this.numTimesteps = T;
    this.options = { numTimesteps: T, linearStart: lo, linearEnd: hi };
    const a = Math.sqrt(lo);
    const b = Math.sqrt(hi);
    const betas64 = new Float64Array(T);
    for (let i = 0; i < T; i++) betas64[i] = (a + ((b - a) * i) / (T - 1)) ** 2;
    this.betas = betas64.map(f32);
    this.alphasCumprod = new Float64Array(T);
    this.sqrtAc = new Float64Array(T);
    this.sqrt1mAc = new Float64Array(T);
    let prod = 1;
    for (let i = 0; i < T; i++) {
      prod *= 1 - betas64[i];
      this.alphasCumprod[i] = f32(prod);
      this.sqrtAc[i] = f32(Math.sqrt(prod));
      this.sqrt1mAc[i] = f32(Math.sqrt(1 - prod));
    }
  }

  private checkT(t: number): void {
    if (!Number.isInteger(t) || t < 0 || t >= this.numTimesteps) {
      throw new Error(`timestep ${t} outside [0, ${this.numTimesteps - 1}]`);
    }
  }

  /**
   * `q_sample`: `sqrt(ac[t]) x0 + sqrt(1 - ac[t]) noise`, one timestep per batch item.
   * @param x0 clean latents `[N, ...]`.
   * @param t timesteps, one per item (or one number for all).
   * @param noise standard normal noise of x0's shape.
   * @throws Error on shape mismatch or a timestep outside [0, T-1].
   */
  qSample(x0: HostTensor, t: number | readonly number[], noise: HostTensor): HostTensor<'float32'> {
    if (x0.shape.join(',') !== noise.shape.join(',')) {
      throw new Error(`qSample: noise shape [${noise.shape.join(', ')}] differs from x0 [${x0.shape.join(', ')}]`);
    }
    const n = x0.shape[0];
    const ts = typeof t === 'number' ? new Array<number>(n).fill(t) : t;
    if (ts.length !== n) throw new Error(`qSample: ${ts.length} timesteps for a batch of ${n}`);
    const per = x0.data.length / n;
    const out = new Float32Array(x0.data.length);
    for (let b = 0; b < n; b++) {
      this.checkT(ts[b]);
      const ca = this.sqrtAc[ts[b]];
      const cn = this.sqrt1mAc[ts[b]];
      for (let i = b * per; i < (b + 1) * per; i++) out[i] = f32(ca * x0.data[i]) + f32(cn * noise.data[i]);
    }
    return tensor(out, x0.shape, x0.layout);
  }

  /**
   * The DDIM sub-schedule (`make_ddim_timesteps` 'uniform' with its +1 shift, and
   * `make_ddim_sampling_parameters`).
   * @throws Error when steps is not in [1, T].
   */
  ddim(steps: number, eta = 0): DdimSchedule {
    const T = this.numTimesteps;
    if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new Error(`DDIM steps must be an integer in [1, ${T}], got ${steps}`);
    const c = Math.floor(T / steps);
    const timesteps: number[] = [];
    // The official +1 shift can reach T when T // steps == 1; such a step cannot be indexed.
    for (let i = 0; i < T; i += c) timesteps.push(i + 1);
    if (timesteps[timesteps.length - 1] >= T) {
      throw new Error(
        `DDIM with ${steps} steps: the official spacing (every ${c} timesteps, shifted by 1) reaches timestep ${T}, past the last one; use a step count that divides ${T} (e.g. 5, 10, 20, 25, 50)`,
      );
    }
    const ac = this.alphasCumprod;
    const alphas = timesteps.map((t) => ac[t]);
    const alphasPrev = [ac[0], ...timesteps.slice(0, -1).map((t) => ac[t])];
    const sigmas = alphas.map((a, i) => eta * Math.sqrt(((1 - alphasPrev[i]) / (1 - a)) * (1 - a / alphasPrev[i])));
    return { timesteps, alphas, alphasPrev, sigmas };
  }

  /**
   * Indices into `ddim(steps).timesteps`, in visiting order (descending timesteps), of a
   * reconstruction whose latent was noised to `tStart`.
   * - `official`: the official test (`ddim_sampling` with `timesteps=t`): the first
   *   `int(min(tStart / S, 1) * S)` DDIM timesteps, i.e. all of them whenever tStart >= S, so with
   *   tStart 999 and 10 steps the first step is 901 (not 999).
   * - `partial`: from the last DDIM timestep <= tStart down (SDEdit-style); none when tStart is
   *   below the first DDIM timestep.
   */
  visitOrder(ddim: DdimSchedule, tStart: number, schedule: DdimStartSchedule): number[] {
    this.checkT(tStart);
    const S = ddim.timesteps.length;
    const end = schedule === 'official' ? Math.floor(Math.min(tStart / S, 1) * S) : ddim.timesteps.filter((t) => t <= tStart).length;
    const order: number[] = [];
    for (let i = end - 1; i >= 0; i--) order.push(i);
    return order;
  }

  /**
   * One DDIM update (`p_sample_ddim`, eps-prediction) at sub-schedule index `index`:
   * `x0 = (x - sqrt(1 - a) eps) / sqrt(a)`, `x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z`.
   * @param rng source of z when sigma > 0.
   * @returns x_prev and the predicted x0.
   */
  ddimStep(
    ddim: DdimSchedule,
    index: number,
    x: HostTensor,
    eps: HostTensor,
    rng?: Pick<Rng, 'normal'>,
  ): { prev: HostTensor<'float32'>; predX0: HostTensor<'float32'> } {
    if (x.shape.join(',') !== eps.shape.join(',')) throw new Error(`ddimStep: eps shape [${eps.shape.join(', ')}] differs from x [${x.shape.join(', ')}]`);
    const a = ddim.alphas[index];
    const ap = ddim.alphasPrev[index];
    const sigma = ddim.sigmas[index];
    if (sigma > 0 && !rng) throw new Error('ddimStep: eta > 0 needs an Rng for the noise');
    const s1a = f32(Math.sqrt(1 - a));
    const sa = f32(Math.sqrt(a));
    const sap = f32(Math.sqrt(ap));
    const dir = f32(Math.sqrt(1 - ap - sigma * sigma));
    const prev = new Float32Array(x.data.length);
    const predX0 = new Float32Array(x.data.length);
    for (let i = 0; i < prev.length; i++) {
      const p0 = f32(f32(x.data[i] - f32(s1a * eps.data[i])) / sa);
      predX0[i] = p0;
      let v = f32(f32(sap * p0) + f32(dir * eps.data[i]));
      if (sigma > 0) v = f32(v + sigma * rng!.normal());
      prev[i] = v;
    }
    return { prev: tensor(prev, x.shape, x.layout), predX0: tensor(predX0, x.shape, x.layout) };
  }
}
