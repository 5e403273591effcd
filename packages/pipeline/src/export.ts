/**
 * `diad export`: a fitted run as a deployment bundle (@diad/core's `BundleManifest`), one folder
 * that onnxruntime-node and @diad/core alone can run (`DiadBundle.open`). Recorded from the same
 * model code as the tfjs engine (core's `OnnxRecorderOps`, via @diad/autoencoder and
 * @diad/sg-diffusion):
 * - `autoencoder_encode.onnx` / `autoencoder_decode.onnx` (image <-> scaled latent, ImageNet-normalised pixels),
 * - `hint.onnx` (ControlNet `input_hint_block`) and `step.onnx` (one eps-prediction: SG network +
 *   controlled UNet), see `exportDenoiserOnnx` (weights past 1.5 GiB in `step.onnx.data`),
 * - `context.safetensors` (`context` `[1, L, D]`, the cross-attention context),
 * - `feature_extractor.onnx` (the settings' feature extractor, when it has an ONNX form),
 * - `manifest.json`: versions, config hash and checkpoints, preprocessing, shapes, inference
 *   settings, the decision threshold and per-class score statistics from normal validation images,
 *   and every file's SHA-256. Written last: a folder without it (or with another config hash) is an
 *   unfinished or stale export.
 * Every file is written atomically. The `--engine ort` path of the other commands uses the same
 * export without the feature extractor and the decision (`<run>/onnx`, also made during a fit,
 * before validation has chosen anything).
 */
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { DiffusionSchedule, IMAGENET_MEAN, IMAGENET_STD, writeFileAtomic, writeSafetensors } from '@diad/core';
import { BUNDLE_FORMAT, BUNDLE_VERSION, checksumFiles, MANIFEST_FILE, openBundleStages, type BundleManifest } from '@diad/core/bundle';
import { exportDenoiserOnnx } from '@diad/sg-diffusion';
import { featureExtractorOnnx } from '@diad/feature-extractor';
import { STAGES, type RunDir, type StageName } from './run-dir.js';
import { createModels } from './models.js';
import { ddimVisits, runInference } from './validate.js';
import type { InferenceConfig } from './config.js';
import { diadVersions } from './versions.js';
import type { ValidationInfo } from './fit.js';
import { calibrate, checkSettings } from './settings.js';

export const MANIFEST = MANIFEST_FILE;
const FEATURE_FILE = 'feature_extractor.onnx';
/** The `format` of exports written before bundles (models only); the `--engine ort` path still reads them. */
const LEGACY_FORMAT = 'diad-onnx';

/** The checkpoint each stage state names now (an export of other checkpoints is stale). */
export async function runCheckpoints(run: RunDir): Promise<Record<StageName, string | null>> {
  const out = {} as Record<StageName, string | null>;
  for (const st of STAGES) out[st] = await run.inferenceCheckpoint(st);
  return out;
}

/** The run's list of export folders (absolute paths), newest last. */
export const EXPORTS = 'exports.json';

/** Options of {@link exportRun}. */
export interface ExportOptions {
  /** Inference settings (default: the run's, with the DDIM start validation chose). */
  settings?: InferenceConfig;
  /**
   * A complete bundle (default true): the feature extractor and the decision from validation
   * included. False: the models only, as the `--engine ort` path needs them (also before the fit has validated).
   */
  bundle?: boolean;
  /** Replace an export of another run in the folder (default false: refused). */
  overwrite?: boolean;
}

/**
 * Refuses an output folder that would lose something: one with files but no diad export, or an
 * export of another run (unless `overwrite`). An earlier export of the same run is replaced.
 * @throws Error naming the folder and the fix.
 */
async function checkOutDir(out: string, run: RunDir, overwrite: boolean): Promise<void> {
  const st = await stat(out).catch(() => null);
  if (!st) return;
  if (!st.isDirectory()) throw new Error(`--out ${out} is a file; give a folder for the bundle`);
  const names = (await readdir(out)).filter((n) => !n.startsWith('.'));
  if (names.length === 0) return;
  const manifest = await readFile(join(out, MANIFEST), 'utf8').then(
    (t) => JSON.parse(t) as { format?: string; configHash?: string },
    () => null,
  );
  if (!manifest || ![BUNDLE_FORMAT, LEGACY_FORMAT].includes(manifest.format ?? ''))
    throw new Error(
      `--out ${out} holds other files (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''}) and no diad export; give a new or empty folder`,
    );
  if (manifest.configHash !== run.hash && !overwrite)
    throw new Error(
      `--out ${out} holds an export of another run (config hash ${manifest.configHash}; this run has ${run.hash}); give another folder, or --overwrite to replace it`,
    );
}

/**
 * Exports a fitted run into `outDir` (created if absent). The bundle is written into a sibling
 * folder and renamed into place once complete, so a failed export leaves `outDir` as it was.
 * @returns the manifest written.
 * @throws Error when the run lacks a checkpoint a stage needs, is not fitted (bundle), its settings
 *   are invalid or need a calibration their feature extractor cannot give, or `outDir` holds
 *   something else (the message names the fix).
 */
export async function exportRun(run: RunDir, outDir: string, log: (l: string) => void = () => {}, o: ExportOptions = {}): Promise<BundleManifest> {
  const out = resolve(outDir);
  await checkOutDir(out, run, o.overwrite ?? false);
  const validation = await run.readJson<ValidationInfo>('validation.json');
  if ((o.bundle ?? true) && !validation)
    throw new Error(`${run.dir} is not fitted yet (no validation.json); run \`diad fit --resume ${run.dir}\` first, then export it`);
  // The settings inference uses: given, else the config's with the DDIM start validation chose (when it chose one).
  const inference = o.settings ?? runInference(run.config, validation ?? {});
  await checkSettings(inference);
  // Model evaluations per reconstruction: the DDIM timesteps visited (fewer than its steps when the partial schedule starts low).
  const visits = ddimVisits(inference) ?? NaN;
  const work = join(dirname(out), `.${basename(out)}.partial-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true }).catch((e: Error) => {
    throw new Error(`could not create the bundle folder next to ${out} (${e.message}); give --out a path in a writable folder`);
  });
  try {
    const manifest = await writeExport(run, work, log, { bundle: o.bundle ?? true, inference, validation, visits });
    // Swap the finished folder in: an earlier export moves aside and is removed only after.
    const old = join(dirname(out), `.${basename(out)}.old-${process.pid}`);
    const had = await stat(out).then(
      () => true,
      () => false,
    );
    if (had) await rename(out, old);
    await rename(work, out);
    if (had) await rm(old, { recursive: true, force: true });
    // The run remembers where it was exported, so `--engine ort` finds an export made with --out.
    const known = (await run.readJson<string[]>(EXPORTS)) ?? [];
    if (!known.includes(out)) await run.writeJson(EXPORTS, [...known, out]);
    log(
      `export: ${out} (${(manifest.flopsPerImage.reconstruction / 1e9).toFixed(2)} GFLOP per image for ${visits} ${inference.reconstructor.kind} model evaluation${visits === 1 ? '' : 's'})`,
    );
    return manifest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Writes every file of the export into `out` (a fresh folder), the manifest last. */
async function writeExport(
  run: RunDir,
  out: string,
  log: (l: string) => void,
  o: { bundle: boolean; inference: InferenceConfig; validation: ValidationInfo | null; visits: number },
): Promise<BundleManifest> {
  const { bundle, inference, validation, visits } = o;
  const cfg = run.config;
  const checkpoints = await runCheckpoints(run);
  const models = await createModels(cfg, run, log);
  const p = await models.inferenceParams();
  models.dispose();
  const size = cfg.data.imageSize;
  const versions = diadVersions();
  // The run's inference defaults are not the bundle's settings (`inference` below is).
  const { inference: _defaults, ...trainConfig } = cfg;
  const metadata = { preset: cfg.preset, config_hash: run.hash, diad_version: versions['@diad/pipeline'] ?? '' };
  const { kind, config: aeConfig } = p.autoencoder;
  const ae = await kind.exportOnnx(out, aeConfig, p.autoencoderParams, { height: size, width: size, metadata });
  const f = kind.downsampleFactor(aeConfig);
  const [h, w] = [size / f, size / f];
  const L = p.context.shape[1];
  const den = await exportDenoiserOnnx(out, p.diadConfig, p.denoiser, { latentHeight: h, latentWidth: w, contextTokens: L, metadata });
  await writeSafetensors(join(out, 'context.safetensors'), { context: p.context }, metadata);
  const fe = bundle ? await featureExtractorOnnx(inference.featureExtractor, { engine: 'ort', imageSize: size }, 'inference.featureExtractor') : null;
  if (fe) await writeFileAtomic(join(out, FEATURE_FILE), fe.bytes);
  else if (bundle)
    log(
      `export: warning: feature extractor ${inference.featureExtractor.kind} has no ONNX form; the bundle cannot run alone (re-export with --set featureExtractor=resnet50 or an ONNX file)`,
    );
  const flops = den.flopsPerImage;
  const { unet, hint_channels: hc } = p.diadConfig;
  const C = kind.latentChannels(aeConfig);
  const files: BundleManifest['files'] = {
    autoencoderEncode: 'autoencoder_encode.onnx',
    autoencoderDecode: 'autoencoder_decode.onnx',
    hint: 'hint.onnx',
    step: 'step.onnx',
    context: 'context.safetensors',
    featureExtractor: fe ? FEATURE_FILE : null,
  };
  if (ae.encode !== join(out, files.autoencoderEncode) || den.step !== join(out, files.step))
    throw new Error('export: unexpected file names from the stage exports');
  // Each named file and its ONNX external data (`step.onnx.data`).
  const named = Object.values(files).filter((n): n is string => n !== null);
  const present = await readdir(out);
  const all = present.filter((n) => named.some((m) => n === m || (n.startsWith(`${m}.`) && !n.endsWith('.tmp'))));
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    packageVersions: versions,
    preset: cfg.preset,
    config: trainConfig,
    configHash: run.hash,
    checkpoints,
    classes: validation?.trainedClasses ?? [...new Set((validation?.scores ?? []).map((s) => s.className))].sort(),
    preprocessing: { size, resize: 'bilinear', mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD] },
    files,
    checksums: await checksumFiles(out, all),
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
    seed: cfg.seed,
    featureProvenance: fe?.provenance ?? `${inference.featureExtractor.kind} (not in the bundle)`,
    decision: null,
    classScores: {},
    flopsPerImage: { hint: flops.hint, step: flops.step, reconstruction: flops.hint + visits * flops.step },
    createdAt: new Date().toISOString(),
  };
  if (bundle && validation) {
    // Settings other than the fit's are calibrated on the normal validation images, scored by this bundle's own graphs.
    const opened: { stages?: Awaited<ReturnType<typeof openBundleStages>> } = {};
    try {
      const cal = await calibrate(run, validation, inference, async () => (opened.stages = await openBundleStages(out, manifest)), log);
      manifest.decision = { threshold: cal.threshold, targetFpr: cal.targetFpr, mapRange: cal.mapRange, source: cal.source };
      manifest.classScores = cal.classScores;
    } finally {
      await opened.stages?.release();
    }
  }
  await writeFileAtomic(join(out, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}
