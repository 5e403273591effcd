/**
 * The run's copy of a `clip` context: CLIP's encoding of the empty prompt (the official DiAD
 * conditioning), computed once from the text encoder of `--init` and kept in the run folder, so
 * `test`, `predict` and `export` need neither the text encoder nor the checkpoint afterwards.
 */
import { existsSync } from 'node:fs';
import { readSafetensors, writeSafetensors } from '@diad/core';
import { clipEmptyPromptContext, emptyPromptIds, type DiadConfig } from '@diad/sg-diffusion';
import type { RunConfig } from './config.js';
import type { RunDir } from './run-dir.js';

/** The context file in a run folder (`context` `[1, 77, context_dim]`). */
export const CONTEXT_FILE = 'context.safetensors';

/**
 * The denoiser config the run's models are built with: a `clip` context becomes a `file` context
 * on the run's {@link CONTEXT_FILE}, computed from `--init` the first time; other contexts as they are.
 * @throws Error naming the run and the fix when the file is absent and there is no `--init` to
 *   compute it from, or when the encoder's width is not the UNet's `context_dim`.
 */
export async function withRunContext(cfg: RunConfig, run: RunDir, dCfg: DiadConfig, log: (l: string) => void): Promise<DiadConfig> {
  if (dCfg.context.kind !== 'clip') return dCfg;
  const path = run.path(CONTEXT_FILE);
  if (!existsSync(path)) {
    const init = cfg.models.init;
    if (!init)
      throw new Error(
        `${run.dir}: models.diad.context is clip (CLIP's empty-prompt encoding) and ${CONTEXT_FILE} is missing; it is computed from the text encoder of --init: start the run with --init <Stable Diffusion 1.5 .safetensors>`,
      );
    const t0 = Date.now();
    const context = await clipEmptyPromptContext(await readSafetensors(init));
    const [, tokens, width] = context.shape;
    if (width !== dCfg.unet.context_dim)
      throw new Error(
        `${init}: the CLIP text encoder is ${width} wide, but the UNet's context_dim is ${dCfg.unet.context_dim}; use the preset the checkpoint was made for`,
      );
    await writeSafetensors(path, { context }, { prompt: '', token_ids: JSON.stringify(emptyPromptIds(tokens)), source: init });
    log(`context: CLIP's encoding of the empty prompt [1, ${tokens}, ${width}] from ${init} in ${((Date.now() - t0) / 1000).toFixed(1)} s, kept in ${path}`);
  }
  return { ...dCfg, context: { kind: 'file', path, tensor: 'context' } };
}
