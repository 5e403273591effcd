/**
 * DDIM test-time reconstruction, host-side (paper Sec. 3.3; DiAD `sgn/sgn.py` log_images_test and
 * `ldm/models/diffusion/ddim.py`): noise the latent to `x_T = q_sample(z, t_start)`, then sample
 * back to a clean latent with an eps-prediction model guided by the input image.
 *
 * The sampler is kept apart from the model (as diffusers keeps schedulers apart from UNets): it
 * drives any {@link GuidedDenoiser} (the tfjs `DiadDenoiser` of @diad/sg-diffusion, or
 * `OrtGuidedDenoiser` over an export), so the training packages and a deployed bundle run one loop.
 *
 * The official test runs classifier-free guidance with scale 9, but its conditional and
 * unconditional inputs are identical (same hint, and the empty-prompt context for both), so
 * `uncond + 9 (cond - uncond) = cond`: scale 1. We run the model once per step instead of twice.
 */
import { ItemNoise } from './item-noise.js';
import { DiffusionSchedule } from './schedule.js';
import type { ReconstructOptions, Reconstructor } from './stages.js';
import { tensor, type HostTensor } from './tensor.js';

/** The eps-prediction of one batch at any timestep, with the batch's guidance computed once. */
export interface GuidedEps {
  /**
   * @param x noisy latents `[N, C, h, w]`.
   * @param timestep one timestep (0..999) for the whole batch.
   * @returns eps `[N, C, h, w]`.
   */
  eps(x: HostTensor, timestep: number): Promise<HostTensor>;
  /** Frees the batch's guidance (engine memory). */
  dispose(): void;
}

/** An eps-prediction model guided by the input image (SG network + UNet), on any engine: what a sampler drives. */
export interface GuidedDenoiser {
  /**
   * Prepares a batch: the guided hint of the input images and the context.
   * @param hint the input images `[N, 3, f*h, f*w]` (f = `hint_downsample`) (image convention).
   */
  guide(hint: HostTensor): Promise<GuidedEps>;
}

/** DDIM settings (paper Sec. 3.3; official `ddim.py`). Validated from configs by @diad/sg-diffusion's `ddimOptionsSchema`. */
export interface DdimOptions {
  /**
   * Where the reconstruction starts, 1..999; official 999. `official` schedule: the latent is noised
   * to `tStart`; `partial`: to the last DDIM timestep <= `tStart` ({@link noiseTimestep}).
   */
  tStart: number;
  /** Number of DDIM steps over the 1000 training timesteps (official 10). */
  steps: number;
  /** DDIM eta (0 = deterministic). */
  eta: number;
  /** `official` visits every DDIM timestep whatever tStart is; `partial` starts at the last one <= tStart. */
  schedule: 'official' | 'partial';
}

/** The official test's DDIM: t_start 999, 10 steps, eta 0, official schedule. */
export const OFFICIAL_DDIM: DdimOptions = { tStart: 999, steps: 10, eta: 0, schedule: 'official' };

/**
 * How many model evaluations a DDIM reconstruction makes: the DDIM timesteps it visits from
 * `tStart` (with the `partial` schedule, those at or below `tStart`: fewer than `steps` when
 * `tStart` is below the top of the schedule).
 */
export function ddimVisitedSteps(options: DdimOptions, schedule: DiffusionSchedule = new DiffusionSchedule()): number {
  return schedule.visitOrder(schedule.ddim(options.steps, options.eta), options.tStart, options.schedule).length;
}

/**
 * The DDIM loop: `x_T = q_sample(z, t)` with per-image noise ({@link ItemNoise}) at
 * `t` = {@link noiseTimestep}, then one DDIM step per visited timestep (`official` or `partial` order, {@link DiffusionSchedule.visitOrder}).
 * @param latents scaled latents `[N, C, h, w]`.
 * @param eps the engine's eps-prediction for `x` `[N, C, h, w]` at one timestep (0..999).
 * @returns the reconstructed latents `[N, C, h, w]`, in the layout of `latents`.
 */
export async function ddimLoop(
  schedule: DiffusionSchedule,
  latents: HostTensor,
  options: DdimOptions & { seed: number },
  eps: (x: HostTensor, timestep: number) => Promise<HostTensor>,
): Promise<HostTensor> {
  const d = schedule.ddim(options.steps, options.eta);
  const n = latents.shape[0];
  const noise = new ItemNoise(options.seed, n, latents.data.length / n);
  const order = schedule.visitOrder(d, options.tStart, options.schedule);
  const tNoise = noiseTimestep(d, order, options);
  let x: HostTensor = schedule.qSample(latents, tNoise, tensor(noise.normals(latents.data.length), latents.shape, latents.layout));
  for (const index of order) {
    x = schedule.ddimStep(d, index, x, await eps(x, d.timesteps[index]), noise).prev;
  }
  return tensor(x.data as Float32Array, x.shape, latents.layout);
}

/**
 * The timestep the latent is noised to before the DDIM loop. `official`: `tStart`, as the official
 * test (its first step then runs at a lower timestep, 901 for tStart 999, which at that noise level
 * changes little). `partial`: the first timestep visited (as diffusers' img2img noises to its first
 * timestep), so the first step's eps-prediction sees the noise level it assumes; noising to
 * `tStart` instead left the difference (e.g. t=300 treated as t=201) in the reconstruction as
 * high-frequency mottle.
 */
export function noiseTimestep(d: { timesteps: readonly number[] }, order: readonly number[], options: Pick<DdimOptions, 'tStart' | 'schedule'>): number {
  return options.schedule === 'partial' && order.length > 0 ? d.timesteps[order[0]] : options.tStart;
}

/** DDIM reconstruction with any {@link GuidedDenoiser}: the `Reconstructor` stage. */
export class DdimReconstructor implements Reconstructor {
  constructor(
    readonly denoiser: GuidedDenoiser,
    readonly options: DdimOptions = OFFICIAL_DDIM,
    readonly schedule: DiffusionSchedule = new DiffusionSchedule(),
  ) {}

  /**
   * @param latents scaled latents `[N, C, h, w]`.
   * @param hint the input images `[N, 3, f*h, f*w]` (f = `hint_downsample`) (image convention).
   * @param options the noise seed (each image draws its own copy of the stream).
   * @returns reconstructed latents `[N, C, h, w]`.
   * @throws Error on mismatched shapes.
   */
  async reconstruct(latents: HostTensor, hint: HostTensor, options: ReconstructOptions = { seed: 0 }): Promise<HostTensor> {
    const guided = await this.denoiser.guide(hint);
    try {
      return await ddimLoop(this.schedule, latents, { ...this.options, seed: options.seed }, (x, t) => guided.eps(x, t));
    } finally {
      guided.dispose();
    }
  }
}
