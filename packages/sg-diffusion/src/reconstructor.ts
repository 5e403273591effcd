/**
 * Test-time reconstruction (paper Sec. 3.3; DiAD `sgn/sgn.py` log_images_test and
 * `ldm/models/diffusion/ddim.py`): noise the latent to `x_T = q_sample(z, t_start)`, then DDIM
 * back to a clean latent with the SG network guided by the input image.
 *
 * The official test runs classifier-free guidance with scale 9, but its conditional and
 * unconditional inputs are identical (same hint, and the empty-prompt context for both), so
 * `uncond + 9 (cond - uncond) = cond`: scale 1. We run the model once per step instead of twice.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type HostTensor, type ReconstructOptions, type Reconstructor } from '@diad/core';
import type { DiadDenoiser } from './denoiser.js';
import { DiffusionSchedule } from './schedule.js';
import { ddimLoop } from './ddim-loop.js';

/** Default options: the official test (t_start 999, 10 DDIM steps, eta 0, official schedule). */
export const OFFICIAL_RECONSTRUCT: ReconstructOptions = { tStart: 999, steps: 10, eta: 0, schedule: 'official', seed: 0 };

/** DDIM reconstruction with a {@link DiadDenoiser}: core's `Reconstructor` stage. */
export class DdimReconstructor implements Reconstructor {
  constructor(
    readonly denoiser: DiadDenoiser,
    readonly schedule: DiffusionSchedule = new DiffusionSchedule(),
  ) {}

  /**
   * @param latents scaled latents `[N, C, h, w]`.
   * @param hint the input images `[N, 3, f*h, f*w]` (f = `hint_downsample`) (image convention).
   * @param options t_start, steps, eta, schedule (`official` / `partial`, see
   *   {@link DiffusionSchedule.visitOrder}) and the noise seed.
   * @returns reconstructed latents `[N, C, h, w]`.
   * @throws Error on mismatched shapes or invalid options.
   */
  async reconstruct(latents: HostTensor, hint: HostTensor, options: ReconstructOptions = OFFICIAL_RECONSTRUCT): Promise<HostTensor> {
    const n = latents.shape[0];
    const guided = this.denoiser.guidedHint(hint);
    const ctx = this.denoiser.context(n);
    try {
      return await ddimLoop(this.schedule, latents, options, (x, t) => this.denoiser.readEps(x, guided, new Array<number>(n).fill(t), ctx));
    } finally {
      tf.dispose([guided, ctx]);
    }
  }
}
