/**
 * What `diad fit` (and `demo`) check before anything is written or trained, so a run never stops
 * after hours on an option it could have refused at once, and a refused run leaves no folder
 * behind: the run folder path, the inference settings (registered sampler and feature extractor
 * kinds, an ONNX file that exists), the `--init` checkpoint (a safetensors file whose tensors match the configured models;
 * a Stable Diffusion one also needs its CLIP text encoder when the context is `clip`), that the SG
 * stage's training fits the machine's memory (`memory.ts`) and, for the ort engine, that an execution provider starts.
 */
import { promises as fs } from 'node:fs';
import type { ParamSpec, SafetensorsIndex } from '@diad/core';
import { configuredAutoencoder, DEFAULT_PREFIX as AE_PREFIX } from '@diad/autoencoder';
import { initTfjs } from '@diad/core/tfjs';
import { checkClipText, clipTextConfigOf, diadParamSpec, LEARNED_CONTEXT, parseDiadConfig, SGN_PREFIX, type DiadConfig } from '@diad/sg-diffusion';
import { openSplits } from './data.js';
import { inspectInit } from './init-checkpoint.js';
import { availableMemory, checkTrainingMemory, formatTrainingMemory } from './memory.js';
import { checkSettings } from './settings.js';
import type { RunConfig } from './config.js';
import { checkLatentFit, checkTfjsHeap, type TrainEngine } from './models.js';

/** How many names a refusal lists before it gives a count. */
const SHOWN = 5;

/**
 * @param out the run folder `fit` will write.
 * @param engine the training engine: for `ort`, at least one requested execution provider must start.
 * @param log receives the memory estimate.
 * @throws Error naming the option, the file and the fix: `out` is an existing file; an unknown
 *   sampler or feature extractor kind; a missing ONNX file; an `--init` file that is not safetensors or whose
 *   tensors are missing or mis-shaped for the configured models (diffusers folders and `.ckpt` pickles
 *   with how to convert them); a `clip` context without `--init`; a denoiser too big for the
 *   tfjs-wasm heap on that engine; a denoiser that does not fit the autoencoder's latents
 *   ({@link checkLatentFit}); a training-memory estimate past the memory seen; a data split that leaves no
 *   validation image (the dataset's own errors first: a missing root or class).
 */
export async function preflightFit(cfg: RunConfig, out: string, engine: TrainEngine = 'ort', log?: (line: string) => void): Promise<void> {
  const st = await fs.stat(out).catch(() => null);
  if (st && !st.isDirectory()) throw new Error(`--out ${out} is an existing file, not a folder; give a new folder path for the run (e.g. runs/NAME)`);
  await checkSettings(cfg.inference);
  const ae = configuredAutoencoder(cfg.models.autoencoder, 'models.autoencoder'); // a registered kind with a valid config
  const d = parseDiadConfig(cfg.models.diad, 'models.diad');
  checkLatentFit(ae.kind.latentChannels(ae.config), ae.kind.downsampleFactor(ae.config), d, 'the run config');
  if (cfg.models.init) await checkInit(cfg, d, cfg.models.init);
  else if (d.context.kind === 'clip')
    throw new Error(
      `preset ${cfg.preset} conditions on CLIP's encoding of the empty prompt, computed from a Stable Diffusion checkpoint's text encoder: give --init <v1-5-pruned-emaonly.safetensors> (the single-file layout)`,
    );
  checkTfjsHeap(d, (await initTfjs()).engine, `preset ${cfg.preset}`);
  if (cfg.stages.sg.steps > 0) {
    const seen = availableMemory();
    const memory = await checkTrainingMemory(cfg, seen);
    log?.(`memory: the SG stage needs about ${formatTrainingMemory(memory)}; this machine offers ${(seen.bytes / 2 ** 30).toFixed(1)} GiB (${seen.source})`);
  }
  const splits = await openSplits(cfg);
  if (splits.val.length === 0)
    throw new Error(
      `the validation split is empty: ${splits.train.length} train image(s) of ${splits.classes.join(', ')} at data.validationFraction ${cfg.data.validationFraction} leave none to choose checkpoints on; ` +
        'give more train images (a larger --max-train-per-class, or more data) or a larger data.validationFraction',
    );
  if (engine === 'ort') {
    const { probeOrtProviders } = await import('@diad/core/ort');
    const probes = await probeOrtProviders();
    if (!probes.some((p) => p.ok)) {
      throw new Error(
        `no requested onnxruntime execution provider can start:\n${probes.map((p) => `  ${p.provider}: ${p.reason}`).join('\n')}\nAdd cpu as a fallback (--providers ${probes.map((p) => p.provider).join(',')},cpu), or train with --engine tfjs`,
      );
    }
  }
}

async function checkInit(cfg: RunConfig, d: DiadConfig, path: string): Promise<void> {
  const init = await inspectInit(path);
  const file = init.index;
  const configured = configuredAutoencoder(cfg.models.autoencoder, 'models.autoencoder');
  const ae = configured.kind.paramSpec(configured.config, AE_PREFIX);
  // A Stable Diffusion checkpoint has no SG network (made from its UNet) and no learned context.
  const dn = diadParamSpec(d).filter((s) => init.layout === 'diad' || (!s.name.startsWith(SGN_PREFIX) && s.name !== LEARNED_CONTEXT));
  const problems = [...mismatches(file, ae, 'models.autoencoder'), ...mismatches(file, dn, 'models.diad')];
  if (problems.length) {
    const fields = [...new Set(problems.map((p) => p.field))].join(' and ');
    const lines = problems.slice(0, SHOWN).map((p) => `  ${p.text}`);
    const more = problems.length > SHOWN ? `\n  ... and ${problems.length - SHOWN} more` : '';
    throw new Error(
      `--init ${path} (${init.layout} layout) does not match the run's ${fields} (preset ${cfg.preset}): ${problems.length} of ${ae.length + dn.length} parameters missing or mis-shaped\n${lines.join('\n')}${more}\n` +
        `Use the preset the checkpoint was made for, or a checkpoint of this preset's sizes.`,
    );
  }
  if (d.context.kind === 'clip') {
    const clip = clipTextConfigOf(file);
    checkClipText(file, clip);
    if (clip.hidden_size !== d.unet.context_dim)
      throw new Error(
        `--init ${path}: its CLIP text encoder is ${clip.hidden_size} wide, the UNet's context_dim is ${d.unet.context_dim} (preset ${cfg.preset}); use the preset the checkpoint was made for`,
      );
  }
}

function mismatches(file: SafetensorsIndex, specs: readonly ParamSpec[], field: string): { field: string; text: string }[] {
  const out: { field: string; text: string }[] = [];
  for (const s of specs) {
    if (!file.has(s.name)) out.push({ field, text: `${s.name}: missing (expected [${s.shape.join(', ')}])` });
    else {
      const shape = file.entry(s.name).shape;
      if (shape.join(',') !== s.shape.join(','))
        out.push({ field, text: `${s.name}: [${shape.join(', ')}] in the file, [${s.shape.join(', ')}] for ${field}` });
    }
  }
  return out;
}
