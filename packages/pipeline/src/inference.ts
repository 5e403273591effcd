/**
 * The inference stages of a fitted run on either engine: `tfjs` (the run's checkpoints through
 * `createModels`) or `ort` (the run's ONNX export on onnxruntime-node: `OrtAutoencoder` +
 * `OrtGuidedDenoiser`, execution providers from `DIAD_ORT_PROVIDERS`, e.g. `cuda,cpu`; CPU by
 * default). The sampler and the feature extractor come from their registries by the inference
 * config's `kind`, so a variant is one more `createReconstructor` / `loadFeatureExtractor` over the
 * same opened denoiser.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readSafetensors } from '@diad/core';
import { initTfjs, formatEngineInfo } from '@diad/core/tfjs';
import type { Autoencoder, GuidedDenoiser, Stages } from '@diad/core';
import { configuredAutoencoder } from '@diad/autoencoder';
import { createReconstructor } from '@diad/sg-diffusion';
import { loadFeatureExtractor, type LoadedBackbone } from '@diad/feature-extractor';
import type { RunDir } from './run-dir.js';
import { createModels } from './models.js';
import type { InferenceConfig } from './config.js';
import { exportRun, runCheckpoints, EXPORTS, MANIFEST } from './export.js';
import type { BundleManifest } from '@diad/core/bundle';

export type EngineName = 'tfjs' | 'ort';
export const ENGINES: readonly EngineName[] = ['tfjs', 'ort'];

export interface EngineOptions {
  engine?: EngineName;
  /** Folder of a `diad export` (ort only; default `<run>/onnx`, exported there when missing or stale). */
  onnxDir?: string;
}

/** A run's trained autoencoder and guided denoiser on one engine: what every inference variant shares. */
export interface Denoising {
  autoencoder: Autoencoder;
  denoiser: GuidedDenoiser;
  /** Engine description, e.g. `onnxruntime-node cpu (runs/x/onnx)`. */
  engine: string;
  /** The engine name feature extractors are asked for. */
  engineName: EngineName;
  imageSize: number;
  dispose(): Promise<void>;
}

/** Inference stages plus the engine description; `dispose` frees native sessions and engine memory. */
export interface InferenceStages extends Stages {
  engine: string;
  /** Where the feature extractor's weights come from, and its engine. */
  featureProvenance: string;
  /** The settings the stages were made with. */
  settings: InferenceConfig;
  dispose(): Promise<void>;
}

/**
 * Parses `--engine`; with `onnxDir` (`--onnx-dir`, an export folder) the engine must be `ort`.
 * @throws Error naming the known engines, or `--onnx-dir` with another engine.
 */
export function parseEngine(v: string | undefined, onnxDir?: string): EngineName {
  const e = (v ?? 'tfjs').toLowerCase();
  if (!ENGINES.includes(e as EngineName)) throw new Error(`--engine ${v}: unknown engine; use one of ${ENGINES.join(', ')}`);
  if (onnxDir !== undefined && e !== 'ort') throw new Error(`--onnx-dir ${onnxDir}: an export folder is read by the ort engine only; add --engine ort`);
  return e as EngineName;
}

/** The manifest in `dir`, or null when absent or unreadable (`strict`: an unreadable one is an error). */
function readManifest(dir: string, strict: boolean, run: RunDir): BundleManifest | null {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as BundleManifest;
  } catch (e) {
    if (strict) throw new Error(`${path} is not valid JSON (${(e as Error).message}); re-export with \`diad export --run ${run.dir} --out ${dir}\``);
    return null;
  }
}

/**
 * The run's ONNX export, and which one: `dir` when given (it must hold an export of the run's
 * config and current checkpoints), else the newest up-to-date export the run made (`<run>/onnx`
 * or a `diad export --out` folder recorded in `exports.json`), else a new export into `<run>/onnx`.
 * @throws Error when an explicit folder holds no up-to-date export of this run.
 */
export async function ensureExport(run: RunDir, dir: string | undefined, log: (l: string) => void): Promise<{ dir: string; manifest: BundleManifest }> {
  const current = JSON.stringify(await runCheckpoints(run));
  const fresh = (m: BundleManifest | null) => m !== null && m.configHash === run.hash && JSON.stringify(m.checkpoints) === current;
  if (dir) {
    const target = resolve(dir);
    const existing = readManifest(target, true, run);
    if (existing && fresh(existing)) {
      log(`engine ort: using the export in ${target} (--onnx-dir)`);
      return { dir: target, manifest: existing };
    }
    throw new Error(
      existing
        ? `${join(target, MANIFEST)} was exported from another config or other checkpoints (hash ${existing.configHash}, checkpoints ${JSON.stringify(existing.checkpoints)}; the run has ${run.hash}, ${current}); re-export with \`diad export --run ${run.dir} --out ${dir}\``
        : `${dir} holds no ONNX export (no ${MANIFEST}); make one with \`diad export --run ${run.dir} --out ${dir}\` or drop --onnx-dir`,
    );
  }
  const own = resolve(run.path('onnx'));
  const candidates = [...new Set([...((await run.readJson<string[]>(EXPORTS)) ?? []).reverse(), own])];
  for (const c of candidates) {
    const m = readManifest(c, false, run);
    if (fresh(m)) {
      log(`engine ort: using the run's export in ${c}`);
      return { dir: c, manifest: m! };
    }
  }
  log(`engine ort: no up-to-date export of the run; exporting it to ${own}`);
  return { dir: own, manifest: await exportRun(run, own, log, { bundle: false }) };
}

/**
 * Opens a fitted run's autoencoder and guided denoiser on the chosen engine.
 * @throws Error from the checkpoints, the export, or onnxruntime (naming the file).
 */
export async function openDenoising(run: RunDir, o: EngineOptions, log: (l: string) => void): Promise<Denoising> {
  const cfg = run.config;
  const imageSize = cfg.data.imageSize;
  if ((o.engine ?? 'tfjs') === 'tfjs') {
    // Inference only: the engine text names tfjs, not the fit's training engine.
    const models = await createModels(cfg, run, log, { trainEngine: 'tfjs' });
    const d = await models.denoising();
    return {
      ...d,
      engine: models.engine,
      engineName: 'tfjs',
      imageSize,
      async dispose() {
        d.dispose();
        models.dispose();
      },
    };
  }
  const { dir, manifest } = await ensureExport(run, o.onnxDir, log);
  const f = (name: Exclude<keyof BundleManifest['files'], 'featureExtractor'>) => join(dir, manifest.files[name]);
  const ae = configuredAutoencoder(cfg.models.autoencoder, `${run.path('config.json')} models.autoencoder`);
  const context = (await readSafetensors(f('context'))).float32('context');
  const autoencoder = await ae.kind.openOnnx({ encode: f('autoencoderEncode'), decode: f('autoencoderDecode') }, ae.config);
  const { OrtGuidedDenoiser } = await import('@diad/core/ort');
  const denoiser = await OrtGuidedDenoiser.open({ hint: f('hint'), step: f('step') }, context).catch(async (e) => {
    await autoencoder.release();
    throw e;
  });
  return {
    autoencoder,
    denoiser,
    engine: `onnxruntime-node ${denoiser.step.providers.join(',')}${denoiser.step.skipped.map((k) => ` (skipped ${k.provider}: ${k.reason})`).join('')} (${dir})`,
    engineName: 'ort',
    imageSize,
    async dispose() {
      await autoencoder.release();
      await denoiser.release();
    },
  };
}

/**
 * The feature extractor of inference settings for the denoising's engine (a Keras backbone runs on
 * onnxruntime with the ort engine; a TF-graph one stays on tfjs), and its engine in words.
 * @throws Error for an unknown kind (listing the registered ones) or from the extractor.
 */
export async function openFeatureExtractor(
  d: Pick<Denoising, 'engineName' | 'imageSize'>,
  settings: InferenceConfig,
): Promise<LoadedBackbone & { engineText: string }> {
  const fe = await loadFeatureExtractor(settings.featureExtractor, { engine: d.engineName, imageSize: d.imageSize }, 'inference.featureExtractor');
  const engineText = fe.engine === 'tfjs' ? formatEngineInfo(await initTfjs()) : fe.engine;
  return { ...fe, engineText };
}

/**
 * Opens the inference stages of a fitted run with the given settings on the chosen engine.
 * @throws Error from the checkpoints, the export, onnxruntime (naming the file), or an unknown
 *   sampler / feature extractor kind.
 */
export async function openInference(run: RunDir, settings: InferenceConfig, o: EngineOptions, log: (l: string) => void): Promise<InferenceStages> {
  const d = await openDenoising(run, o, log);
  try {
    const reconstructor = createReconstructor(settings.reconstructor, d.denoiser, 'inference.reconstructor');
    const fe = await openFeatureExtractor(d, settings);
    return {
      autoencoder: d.autoencoder,
      reconstructor,
      featureExtractor: fe.extractor,
      engine: `${d.engine}; feature extractor on ${fe.engineText}`,
      featureProvenance: fe.provenance,
      settings,
      async dispose() {
        await d.dispose();
        await fe.dispose();
      },
    };
  } catch (e) {
    await d.dispose();
    throw e;
  }
}
