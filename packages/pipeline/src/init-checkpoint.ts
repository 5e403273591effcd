/**
 * The checkpoints `--init` takes, told apart by their keys from the safetensors header alone (a
 * Stable Diffusion file is 2-4 GiB), and refusals naming the fix for the layouts it does not take.
 * - `diad`: a converted DiAD checkpoint, `model.diffusion_model.*` + `control_model.*` (+ `first_stage_model.*`);
 * - `stable-diffusion`: the original single-file layout of SD 1.x (`v1-5-pruned-emaonly.safetensors`):
 *   `model.diffusion_model.*` (the UNet), `first_stage_model.*` (the kl-f8 autoencoder),
 *   `cond_stage_model.transformer.*` (the CLIP text encoder); the SG network is then made from the
 *   UNet encoder as the official `build_model.py` does (`DiadDenoiser.load`).
 */
import { promises as fs } from 'node:fs';
import { extname, join } from 'node:path';
import { readSafetensorsIndex, type SafetensorsIndex } from '@diad/core';
import { CLIP_TEXT_PREFIX, SGN_PREFIX, UNET_PREFIX } from '@diad/sg-diffusion';

export type InitLayout = 'diad' | 'stable-diffusion';

/** An `--init` checkpoint: its header, layout, and whether it holds CLIP's text encoder. */
export interface InitCheckpoint {
  path: string;
  index: SafetensorsIndex;
  layout: InitLayout;
  /** `cond_stage_model.transformer.text_model.*` present: the run's context is computed from it. */
  textEncoder: boolean;
}

const PICKLE_EXTENSIONS = new Set(['.ckpt', '.pt', '.pth', '.bin']);

/** Converts a PyTorch pickle checkpoint to safetensors (the tensors of its `state_dict`). */
const PICKLE_FIX = (path: string) =>
  `convert it to safetensors with PyTorch: python -c "import torch; from safetensors.torch import save_file; sd = torch.load('${path}', map_location='cpu'); sd = sd.get('state_dict', sd); save_file({k: v.clone() for k, v in sd.items() if torch.is_tensor(v)}, '${path.replace(/\.[^./]+$/, '')}.safetensors')", or download the .safetensors release (v1-5-pruned-emaonly.safetensors)`;

/**
 * Reads the header of an `--init` checkpoint and tells its layout.
 * @throws Error naming the path and the fix: missing file; a diffusers-layout folder (convert with
 *   diffusers' `convert_diffusers_to_original_stable_diffusion.py`); a `.ckpt`/pickle file (convert
 *   to safetensors); not safetensors.
 */
export async function inspectInit(path: string): Promise<InitCheckpoint> {
  const st = await fs.stat(path).catch(() => null);
  if (!st) throw new Error(`--init ${path}: no such file; give a Stable Diffusion 1.5 single-file checkpoint (.safetensors) or a converted DiAD checkpoint`);
  if (st.isDirectory()) {
    const diffusers = (await fs.stat(join(path, 'model_index.json')).catch(() => null)) || (await fs.stat(join(path, 'unet')).catch(() => null));
    throw new Error(
      diffusers
        ? `--init ${path} is a diffusers-layout folder (model_index.json, unet/, vae/, text_encoder/); --init takes the original single-file layout. ` +
            `Convert it with the diffusers repository's script: python scripts/convert_diffusers_to_original_stable_diffusion.py --model_path ${path} --checkpoint_path sd15.safetensors --use_safetensors`
        : `--init ${path} is a folder; give the checkpoint file (.safetensors)`,
    );
  }
  const head = Buffer.alloc(4);
  const h = await fs.open(path, 'r');
  await h.read(head, 0, 4, 0).finally(() => h.close());
  // Zip (torch.save since 1.6) or a raw pickle (protocol 2+ starts with 0x80).
  const pickle = PICKLE_EXTENSIONS.has(extname(path).toLowerCase()) || head.toString('latin1', 0, 2) === 'PK' || head[0] === 0x80;
  if (pickle) throw new Error(`--init ${path} is a PyTorch pickle checkpoint, which is not read here (loading a pickle can run code); ${PICKLE_FIX(path)}`);
  let index: SafetensorsIndex;
  try {
    index = await readSafetensorsIndex(path);
  } catch (e) {
    throw new Error(`--init ${path}: not a readable safetensors file (${(e as Error).message}); --init takes a checkpoint in safetensors with official names`);
  }
  const names = index.names();
  // Anything else is held to the DiAD layout, whose check lists what is missing.
  const stableDiffusion = names.some((n) => n.startsWith(UNET_PREFIX)) && !names.some((n) => n.startsWith(SGN_PREFIX));
  return {
    path,
    index,
    layout: stableDiffusion ? 'stable-diffusion' : 'diad',
    textEncoder: names.some((n) => n.startsWith(CLIP_TEXT_PREFIX)),
  };
}
