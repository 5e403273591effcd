/**
 * What `diad fit` (and `demo`) check before anything is written or trained, so a run never stops
 * after hours on an option it could have refused at once, and a refused run leaves no folder
 * behind: the run folder path, the inference settings (registered sampler and feature extractor
 * kinds, an ONNX file that exists), the `--init` checkpoint (a safetensors file whose tensors match the configured models)
 * and, for the ort engine, that an execution provider starts.
 */
import { promises as fs } from 'node:fs';
import { readSafetensors, type ParamSpec, type SafetensorsFile } from '@diad/core';
import { configuredAutoencoder, DEFAULT_PREFIX as AE_PREFIX } from '@diad/autoencoder';
import { diadParamSpec, parseDiadConfig } from '@diad/sg-diffusion';
import { checkSettings } from './settings.js';
import type { RunConfig } from './config.js';
import type { TrainEngine } from './models.js';

/** How many names a refusal lists before it gives a count. */
const SHOWN = 5;

/**
 * @param out the run folder `fit` will write.
 * @param engine the training engine: for `ort`, at least one requested execution provider must start.
 * @throws Error naming the option, the file and the fix: `out` is an existing file; an unknown
 *   sampler or feature extractor kind; a missing ONNX file; an `--init` file that is not safetensors or whose
 *   tensors are missing or mis-shaped for the configured models.
 */
export async function preflightFit(cfg: RunConfig, out: string, engine: TrainEngine = 'ort'): Promise<void> {
  const st = await fs.stat(out).catch(() => null);
  if (st && !st.isDirectory()) throw new Error(`--out ${out} is an existing file, not a folder; give a new folder path for the run (e.g. runs/NAME)`);
  await checkSettings(cfg.inference);
  configuredAutoencoder(cfg.models.autoencoder, 'models.autoencoder'); // a registered kind with a valid config
  if (cfg.models.init) await checkInit(cfg, cfg.models.init);
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

async function checkInit(cfg: RunConfig, path: string): Promise<void> {
  let file: SafetensorsFile;
  try {
    file = await readSafetensors(path);
  } catch (e) {
    throw new Error(
      `--init ${path}: not a readable safetensors file (${(e as Error).message}); --init takes a converted official checkpoint in safetensors (official names: first_stage_model.*, model.diffusion_model.*, control_model.*)`,
    );
  }
  const configured = configuredAutoencoder(cfg.models.autoencoder, 'models.autoencoder');
  const ae = configured.kind.paramSpec(configured.config, AE_PREFIX);
  const dn = diadParamSpec(parseDiadConfig(cfg.models.diad, 'models.diad'));
  const problems = [...mismatches(file, ae, 'models.autoencoder'), ...mismatches(file, dn, 'models.diad')];
  if (problems.length === 0) return;
  const fields = [...new Set(problems.map((p) => p.field))].join(' and ');
  const lines = problems.slice(0, SHOWN).map((p) => `  ${p.text}`);
  const more = problems.length > SHOWN ? `\n  ... and ${problems.length - SHOWN} more` : '';
  throw new Error(
    `--init ${path} does not match the run's ${fields} (preset ${cfg.preset}): ${problems.length} of ${ae.length + dn.length} parameters missing or mis-shaped\n${lines.join('\n')}${more}\n` +
      `Use the preset the checkpoint was made for, or a checkpoint of this preset's sizes.`,
  );
}

function mismatches(file: SafetensorsFile, specs: readonly ParamSpec[], field: string): { field: string; text: string }[] {
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
