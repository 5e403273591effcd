/**
 * The inference stages of `diad test` / `diad predict` on either engine: `tfjs` (the run's
 * checkpoints through `createModels`) or `ort` (the run's ONNX export on onnxruntime-node:
 * `OrtAutoencoder` + `OrtDdimReconstructor`, execution providers from `DIAD_ORT_PROVIDERS`, e.g.
 * `cuda,cpu`; CPU by default). The feature extractor is the configured one on both engines.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readSafetensors } from '@diad/core';
import { initTfjs, formatEngineInfo } from '@diad/core/tfjs';
import { parseAutoencoderConfig, OrtAutoencoder } from '@diad/autoencoder';
import { OrtDdimReconstructor } from '@diad/sg-diffusion';
import type { RunDir } from './run-dir.js';
import type { Stages } from './score.js';
import { createModels, featureExtractor } from './models.js';
import { exportRun, runCheckpoints, EXPORTS, MANIFEST, type OnnxManifest } from './export.js';

export type EngineName = 'tfjs' | 'ort';
export const ENGINES: readonly EngineName[] = ['tfjs', 'ort'];

export interface EngineOptions {
  engine?: EngineName;
  /** Folder of a `diad export` (ort only; default `<run>/onnx`, exported there when missing or stale). */
  onnxDir?: string;
}

/** Inference stages plus the engine description; `dispose` frees native sessions and engine memory. */
export interface InferenceStages extends Stages {
  engine: string;
  /** Where the feature extractor's weights come from, and its engine. */
  featureProvenance: string;
  dispose(): Promise<void>;
}

/**
 * Parses `--engine`.
 * @throws Error naming the known engines.
 */
export function parseEngine(v: string | undefined): EngineName {
  const e = (v ?? 'tfjs').toLowerCase();
  if (!ENGINES.includes(e as EngineName)) throw new Error(`--engine ${v}: unknown engine; use one of ${ENGINES.join(', ')}`);
  return e as EngineName;
}

/** The manifest in `dir`, or null when absent or unreadable (`strict`: an unreadable one is an error). */
function readManifest(dir: string, strict: boolean, run: RunDir): OnnxManifest | null {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as OnnxManifest;
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
export async function ensureExport(run: RunDir, dir: string | undefined, log: (l: string) => void): Promise<{ dir: string; manifest: OnnxManifest }> {
  const current = JSON.stringify(await runCheckpoints(run));
  const fresh = (m: OnnxManifest | null) => m !== null && m.configHash === run.hash && JSON.stringify(m.checkpoints) === current;
  if (dir) {
    const target = resolve(dir);
    const existing = readManifest(target, true, run);
    if (existing && fresh(existing)) {
      log(`engine ort: using the export in ${target} (--onnx-dir)`);
      return { dir: target, manifest: existing };
    }
    throw new Error(existing
      ? `${join(target, MANIFEST)} was exported from another config or other checkpoints (hash ${existing.configHash}, checkpoints ${JSON.stringify(existing.checkpoints)}; the run has ${run.hash}, ${current}); re-export with \`diad export --run ${run.dir} --out ${dir}\``
      : `${dir} holds no ONNX export (no ${MANIFEST}); make one with \`diad export --run ${run.dir} --out ${dir}\` or drop --onnx-dir`);
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
  return { dir: own, manifest: await exportRun(run, own, log) };
}

/**
 * Opens the inference stages of a fitted run on the chosen engine.
 * @param cfg the config whose feature extractor is loaded (default the run's; `diad validate` swaps it).
 * @throws Error from the checkpoints, the export, or onnxruntime (naming the file).
 */
export async function openInference(run: RunDir, o: EngineOptions, log: (l: string) => void, cfg = run.config): Promise<InferenceStages> {
  if ((o.engine ?? 'tfjs') === 'tfjs') {
    const models = await createModels(cfg, run, log);
    const stages = await models.inferenceStages();
    return {
      ...stages,
      engine: models.engine,
      async dispose() {
        stages.dispose();
        models.dispose();
      },
    };
  }
  const { dir, manifest } = await ensureExport(run, o.onnxDir, log);
  const f = (name: keyof OnnxManifest['files']) => join(dir, manifest.files[name]);
  const aeCfg = parseAutoencoderConfig(cfg.models.autoencoder, `${run.path('config.json')} models.autoencoder`);
  const context = (await readSafetensors(f('context'))).float32('context');
  const autoencoder = await OrtAutoencoder.open({ encode: f('autoencoderEncode'), decode: f('autoencoderDecode') }, aeCfg);
  const reconstructor = await OrtDdimReconstructor.open({ hint: f('hint'), step: f('step') }, context).catch(async (e) => {
    await autoencoder.release();
    throw e;
  });
  // The shipped Keras backbones run on onnxruntime too (recorded as ONNX); a TF-graph one stays on tfjs.
  const info = await initTfjs();
  const fe = await featureExtractor(cfg, 'ort').catch(async (e) => {
    await autoencoder.release();
    await reconstructor.release();
    throw e;
  });
  const feEngine = fe.engine === 'onnxruntime' ? 'onnxruntime' : formatEngineInfo(info);
  return {
    autoencoder,
    reconstructor,
    featureExtractor: fe.extractor,
    engine: `onnxruntime-node ${reconstructor.step.providers.join(',')}${reconstructor.step.skipped.map((k) => ` (skipped ${k.provider}: ${k.reason})`).join('')} (${dir}); feature extractor on ${feEngine}`,
    featureProvenance: fe.provenance,
    async dispose() {
      await autoencoder.release();
      await reconstructor.release();
      await fe.dispose();
    },
  };
}
