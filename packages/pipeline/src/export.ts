/**
 * `diad export`: the test-time models of a fitted run as ONNX files plus a manifest, recorded from
 * the same model code as the tfjs engine (core's `OnnxRecorderOps`, via @diad/autoencoder and
 * @diad/sg-diffusion):
 * - `autoencoder_encode.onnx` / `autoencoder_decode.onnx` (image <-> scaled latent, ImageNet-normalised pixels),
 * - `hint.onnx` (ControlNet `input_hint_block`) and `step.onnx` (one eps-prediction: SG network +
 *   controlled UNet), see `exportDenoiserOnnx`,
 * - `context.safetensors` (`context` `[1, L, D]`, the cross-attention context),
 * - `manifest.json` ({@link OnnxManifest}), written last: a folder without it (or with another
 *   config hash) is an unfinished or stale export.
 * Every file is written atomically. The feature extractor is not exported: it stays the configured
 * one (bundled tfjs backbone or the user's ONNX file). The graphs do not depend on the inference
 * settings; the manifest records the settings the export was made with (the run's by default).
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic, writeSafetensors } from '@diad/core';
import { DiffusionSchedule, exportDenoiserOnnx } from '@diad/sg-diffusion';
import { STAGES, type RunDir, type StageName } from './run-dir.js';
import { createModels } from './models.js';
import { ddimVisits, runInference } from './validate.js';
import type { InferenceConfig } from './config.js';
import { pipelineVersion } from './versions.js';

export const MANIFEST = 'manifest.json';

/** The checkpoint each stage state names now (an export of other checkpoints is stale). */
export async function runCheckpoints(run: RunDir): Promise<Record<StageName, string | null>> {
  const out = {} as Record<StageName, string | null>;
  for (const st of STAGES) out[st] = await run.inferenceCheckpoint(st);
  return out;
}

/** The run's list of export folders (absolute paths), newest last. */
export const EXPORTS = 'exports.json';

/** `manifest.json` of an export. Shapes use `N` for the dynamic batch axis. */
export interface OnnxManifest {
  format: 'diad-onnx';
  version: 1;
  /** @diad/pipeline version that wrote it. */
  packageVersion: string;
  preset: string;
  configHash: string;
  /** The stage checkpoints exported (paths relative to the run folder; null: none, e.g. `--init`). */
  checkpoints: Record<StageName, string | null>;
  /** Files relative to the manifest's folder. */
  files: { autoencoderEncode: string; autoencoderDecode: string; hint: string; step: string; context: string };
  shapes: Record<string, Record<string, (number | 'N')[]>>;
  /** Latent scale factor baked into the autoencoder graphs. */
  scaleFactor: number;
  /** Diffusion schedule of the step graph (scaled-linear betas, `DiffusionSchedule.options`). */
  schedule: { numTimesteps: number; betaSchedule: 'scaled_linear'; linearStart: number; linearEnd: number };
  /** The inference settings of the export (the run's defaults unless overridden): sampler, feature extractor, anomaly map, threshold. */
  inference: InferenceConfig;
  /** FLOPs per image (convs, linears, attention): one hint-block run, one step, and a whole reconstruction (the DDIM timesteps it visits). */
  flopsPerImage: { hint: number; step: number; reconstruction: number };
  createdAt: string;
}

/**
 * Exports a fitted run's test-time models into `outDir` (created if absent).
 * @returns the manifest written.
 * @throws Error when the run lacks a checkpoint a stage needs (the message names the fix).
 */
export async function exportRun(run: RunDir, outDir: string, log: (l: string) => void = () => {}, settings?: InferenceConfig): Promise<OnnxManifest> {
  const cfg = run.config;
  const out = resolve(outDir);
  await mkdir(out, { recursive: true });
  const checkpoints = await runCheckpoints(run);
  const models = await createModels(cfg, run, log);
  const p = await models.inferenceParams();
  models.dispose();
  const size = cfg.data.imageSize;
  // The settings inference uses: given, else the config's with the DDIM start validation chose (when it chose one).
  const inference = settings ?? runInference(cfg, (await run.readJson<{ tStart?: number }>('validation.json')) ?? {});
  // Model evaluations per reconstruction: the DDIM timesteps visited (fewer than its steps when the partial schedule starts low).
  const steps = ddimVisits(inference) ?? NaN;
  const metadata = { preset: cfg.preset, config_hash: run.hash, diad_version: pipelineVersion() };
  const { kind, config: aeConfig } = p.autoencoder;
  const ae = await kind.exportOnnx(out, aeConfig, p.autoencoderParams, { height: size, width: size, metadata });
  const f = kind.downsampleFactor(aeConfig);
  const [h, w] = [size / f, size / f];
  const L = p.context.shape[1];
  const den = await exportDenoiserOnnx(out, p.diadConfig, p.denoiser, { latentHeight: h, latentWidth: w, contextTokens: L, metadata });
  const context = join(out, 'context.safetensors');
  await writeSafetensors(context, { context: p.context }, metadata);
  const flops = den.flopsPerImage ?? { hint: NaN, step: NaN };
  const { unet, hint_channels: hc } = p.diadConfig;
  const C = kind.latentChannels(aeConfig);
  const manifest: OnnxManifest = {
    format: 'diad-onnx',
    version: 1,
    packageVersion: pipelineVersion(),
    preset: cfg.preset,
    configHash: run.hash,
    checkpoints,
    files: {
      autoencoderEncode: 'autoencoder_encode.onnx',
      autoencoderDecode: 'autoencoder_decode.onnx',
      hint: 'hint.onnx',
      step: 'step.onnx',
      context: 'context.safetensors',
    },
    shapes: {
      autoencoderEncode: { image: ['N', 3, size, size], noise: ['N', C, h, w], latent: ['N', C, h, w] },
      autoencoderDecode: { latent: ['N', C, h, w], image: ['N', 3, size, size] },
      hint: { hint: ['N', hc, size, size], guided_hint: ['N', unet.model_channels, h, w] },
      step: {
        latent: ['N', unet.in_channels, h, w],
        guided_hint: ['N', unet.model_channels, h, w],
        timestep: ['N'],
        context: ['N', L, unet.context_dim],
        eps: ['N', unet.out_channels, h, w],
      },
      context: { context: [1, L, unet.context_dim] },
    },
    scaleFactor: kind.scaleFactor,
    schedule: { betaSchedule: 'scaled_linear', ...new DiffusionSchedule().options },
    inference,
    flopsPerImage: { hint: flops.hint, step: flops.step, reconstruction: flops.hint + steps * flops.step },
    createdAt: new Date().toISOString(),
  };
  if (ae.encode !== join(out, manifest.files.autoencoderEncode) || den.step !== join(out, manifest.files.step))
    throw new Error('export: unexpected file names from the stage exports');
  await writeFileAtomic(join(out, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
  // The run remembers where it was exported, so `--engine ort` finds an export made with --out.
  const known = (await run.readJson<string[]>(EXPORTS)) ?? [];
  if (!known.includes(out)) await run.writeJson(EXPORTS, [...known, out]);
  log(
    `export: ${out} (${(manifest.flopsPerImage.reconstruction / 1e9).toFixed(2)} GFLOP per image for ${steps} ${inference.reconstructor.kind} model evaluations)`,
  );
  return manifest;
}
