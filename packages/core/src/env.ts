/**
 * One place for the settings of where and how diad runs (as transformers.js' `env`): engines,
 * execution providers, threads and model paths. Read once from environment variables when
 * `@diad/core` is first imported; a program may change the fields before it opens models.
 *
 * | field | variable | default |
 * | --- | --- | --- |
 * | `tfjsEngine` | `DIAD_TFJS_ENGINE` | `auto` (tfjs-node-gpu, tfjs-node, wasm, cpu: the first that loads) |
 * | `ortProviders` | `DIAD_ORT_PROVIDERS` (comma-separated) | `['cpu']` |
 * | `ortThreads` | `DIAD_ORT_THREADS` | null (onnxruntime's choice: one per physical core) |
 * | `modelsDir` | `DIAD_MODELS_DIR` | null (relative model paths resolve against the working directory) |
 * | `debug` | `DIAD_DEBUG` | false (no stacks, onnxruntime logs only fatal errors) |
 */
import { isAbsolute, resolve } from 'node:path';

export interface DiadEnv {
  /** tfjs engine: `auto`, `tfjs-node-gpu`, `tfjs-node`, `wasm` or `cpu` (checked when tfjs starts). */
  tfjsEngine: string;
  /** onnxruntime-node execution providers in priority order, e.g. `['cuda', 'cpu']` (checked when a session opens). */
  ortProviders: string[];
  /** onnxruntime intra-op threads; null = onnxruntime's choice. */
  ortThreads: number | null;
  /** Folder relative model paths (e.g. an ONNX feature extractor) resolve against; null = the working directory. */
  modelsDir: string | null;
  /** Full error stacks and onnxruntime's native logs. */
  debug: boolean;
}

/**
 * The settings from environment variables.
 * @throws Error naming the variable when `DIAD_ORT_THREADS` is not a whole number >= 1.
 */
export function readEnv(vars: Record<string, string | undefined> = process.env): DiadEnv {
  const threads = vars.DIAD_ORT_THREADS?.trim();
  const n = threads ? Number(threads) : null;
  if (n !== null && !(Number.isInteger(n) && n >= 1))
    throw new Error(`DIAD_ORT_THREADS=${threads}: must be a whole number >= 1 (or unset for onnxruntime's choice)`);
  const providers = (vars.DIAD_ORT_PROVIDERS ?? '')
    .split(',')
    .map((p) => p.trim().toLowerCase())
    .filter(Boolean);
  return {
    tfjsEngine: vars.DIAD_TFJS_ENGINE?.trim() || 'auto',
    ortProviders: providers.length ? providers : ['cpu'],
    ortThreads: n,
    modelsDir: vars.DIAD_MODELS_DIR?.trim() ? resolve(vars.DIAD_MODELS_DIR.trim()) : null,
    debug: !!vars.DIAD_DEBUG && vars.DIAD_DEBUG !== '0',
  };
}

/** The settings in force (see the module comment). */
export const env: DiadEnv = readEnv();

/** A model path as given, or resolved against `env.modelsDir` when relative and one is set. */
export function modelPath(path: string): string {
  return isAbsolute(path) || env.modelsDir === null ? path : resolve(env.modelsDir, path);
}
