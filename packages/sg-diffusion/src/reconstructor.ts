/**
 * The samplers of test-time reconstruction by `kind` (a config's `inference.reconstructor`), over any
 * `GuidedDenoiser`: the tfjs `DiadDenoiser` or the onnxruntime sessions of an export. The DDIM loop
 * itself is host-side code in @diad/core (`ddim.ts`), shared with deployed bundles; here are its
 * option schema and the registry.
 */
import { z } from 'zod';
import { DdimReconstructor, DiffusionSchedule, Registry, type DdimOptions, type GuidedDenoiser, type Reconstructor } from '@diad/core';

/** The DDIM schedules `ddimOptionsSchema` takes (`DdimOptions.schedule`). */
export const DDIM_SCHEDULES = ['official', 'partial'] as const;

/** Validates core's DDIM settings (paper Sec. 3.3; official `ddim.py`) from a config. */
export const ddimOptionsSchema: z.ZodType<DdimOptions> = z
  .object({
    /** Timestep the latent is noised to (`x_T = q_sample(z, tStart)`); official 999. */
    tStart: z.number().int().min(1).max(999),
    /** Number of DDIM steps over the 1000 training timesteps (official 10). */
    steps: z.number().int().min(1).max(1000),
    /** DDIM eta (0 = deterministic). */
    eta: z.number().min(0),
    /** `official` visits every DDIM timestep whatever tStart is; `partial` starts at the last one <= tStart. */
    schedule: z.enum(DDIM_SCHEDULES),
  })
  .strict();
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
