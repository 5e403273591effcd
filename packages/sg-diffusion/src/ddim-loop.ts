import { tensor, type HostTensor } from '@diad/core';
import { ItemNoise } from './noise.js';
import type { DiffusionSchedule } from './schedule.js';
import type { DdimOptions } from './reconstructor.js';

/**
 * The test-time DDIM loop shared by every engine (paper Sec. 3.3; official `ddim.py` sampling):
 * `x_T = q_sample(z, tStart)` with per-image noise ({@link ItemNoise}), then one DDIM step per
 * visited timestep (`official` or `partial` order, {@link DiffusionSchedule.visitOrder}).
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
  let x: HostTensor = schedule.qSample(latents, options.tStart, tensor(noise.normals(latents.data.length), latents.shape, latents.layout));
  for (const index of schedule.visitOrder(d, options.tStart, options.schedule)) {
    x = schedule.ddimStep(d, index, x, await eps(x, d.timesteps[index]), noise).prev;
  }
  return tensor(x.data as Float32Array, x.shape, latents.layout);
}
