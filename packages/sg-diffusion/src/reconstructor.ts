/**
 * Test-time reconstruction (paper Sec. 3.3; DiAD `sgn/sgn.py` log_images_test and
 * `ldm/models/diffusion/ddim.py`): noise the latent to `x_T = q_sample(z, t_start)`, then sample
 * back to a clean latent with the SG network guided by the input image.
 *
 * Samplers are kept apart from the model (as diffusers keeps schedulers apart from UNets): a
 * sampler drives any {@link GuidedDenoiser} (the tfjs `DiadDenoiser` or the onnxruntime sessions of
 * an export), and is looked up by `kind` in {@link reconstructors}; DDIM is the paper's.
 *
 * The official test runs classifier-free guidance with scale 9, but its conditional and
 * unconditional inputs are identical (same hint, and the empty-prompt context for both), so
 * `uncond + 9 (cond - uncond) = cond`: scale 1. We run the model once per step instead of twice.
 */
import { z } from 'zod';
import { Registry, type HostTensor, type ReconstructOptions, type Reconstructor } from '@diad/core';
import { DiffusionSchedule } from './schedule.js';
import { ddimLoop } from './ddim-loop.js';

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

/** DDIM settings (paper Sec. 3.3; official `ddim.py`). */
export const ddimOptionsSchema = z
  .object({
    /** Timestep the latent is noised to (`x_T = q_sample(z, tStart)`); official 999. */
    tStart: z.number().int().min(1).max(999),
    /** Number of DDIM steps over the 1000 training timesteps (official 10). */
    steps: z.number().int().min(1).max(1000),
    /** DDIM eta (0 = deterministic). */
    eta: z.number().min(0),
    /** `official` visits every DDIM timestep whatever tStart is; `partial` starts at the last one <= tStart. */
    schedule: z.enum(['official', 'partial']),
  })
  .strict();
export type DdimOptions = z.infer<typeof ddimOptionsSchema>;

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

/** DDIM reconstruction with any {@link GuidedDenoiser}: core's `Reconstructor` stage. */
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

/** A sampler's settings in a config: its `kind` and its own options (DDIM: {@link DdimOptions}). */
export interface ReconstructorSpec {
  kind: string;
  [option: string]: unknown;
}

/** Makes a sampler over a denoiser from its spec (`source` names the config field in errors). */
export type ReconstructorFactory = (denoiser: GuidedDenoiser, spec: ReconstructorSpec, source: string, schedule: DiffusionSchedule) => Reconstructor;

/** The samplers by `kind`. Register another with `reconstructors.register('name', factory)`. */
export const reconstructors = new Registry<ReconstructorFactory>('reconstructor');

reconstructors.register('ddim', (denoiser, spec, source, schedule) => {
  const { kind: _kind, ...options } = spec;
  const r = ddimOptionsSchema.safeParse(options);
  if (!r.success) throw new Error(`${source}: invalid DDIM options: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  try {
    schedule.ddim(r.data.steps, r.data.eta); // the step count must give indexable timesteps: refused now, not after models load
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`);
  }
  return new DdimReconstructor(denoiser, r.data, schedule);
});

/**
 * The reconstructor a spec names, over `denoiser`.
 * @param source the config field or flag the spec came from (named in errors).
 * @throws Error for an unknown kind (listing the registered ones) or invalid options.
 */
export function createReconstructor(
  spec: ReconstructorSpec,
  denoiser: GuidedDenoiser,
  source = 'reconstructor',
  schedule = new DiffusionSchedule(),
): Reconstructor {
  return reconstructors.get(spec.kind, `${source}.kind`)(denoiser, spec, source, schedule);
}
