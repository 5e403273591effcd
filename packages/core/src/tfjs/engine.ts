/**
 * tfjs engine selection: which TensorFlow.js backend runs the models, and why.
 *
 * Order when nothing is requested: `@tensorflow/tfjs-node-gpu` (CUDA), `@tensorflow/tfjs-node`
 * (native libtensorflow), `@tensorflow/tfjs-backend-wasm` (XNNPACK, SIMD), the pure-JS cpu backend.
 * The tfjs-node packages are optional: they download libtensorflow when installed, so they are
 * absent where only the npm registry is reachable; each skipped engine is recorded with its reason.
 *
 * Training also needs tfjs's gradient registry, which the Node build of `@tensorflow/tfjs-core`
 * leaves empty; `@tensorflow/tfjs-layers` (or `@tensorflow/tfjs`, which tfjs-node loads) fills it.
 * On wasm the Conv2D gradient is replaced by the one in `conv-grad.ts` (wasm has no
 * Conv2DBackpropFilter kernel).
 *
 * Multi-threaded wasm stays off: in Node its workers are created from `blob:` URLs and fail; made to
 * work (worker scripts written to files, tfjs's half-the-CPUs cap raised) 2 threads gave 1.8x on
 * conv forward but no training speed-up on a 2-core machine (notes/engines.md), and it would
 * compete with onnxruntime and other processes for the same cores.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { installConv2DGradOverride } from './conv-grad.js';
import { env } from '../env.js';

/** A tfjs engine: the package that provides the backend. */
export type TfjsEngine = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';

/** The engines in auto-selection order. */
export const TFJS_ENGINES: readonly TfjsEngine[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

/** Environment variable that overrides the automatic choice (`auto` or one of {@link TFJS_ENGINES}). */
export const TFJS_ENGINE_ENV = 'DIAD_TFJS_ENGINE';

/** The wasm engine's heap (32-bit addresses): all its tensors together stay under 4 GiB. */
export const WASM_HEAP_BYTES = 4 * 2 ** 30;

const PACKAGES: Record<TfjsEngine, string> = {
  'tfjs-node-gpu': '@tensorflow/tfjs-node-gpu',
  'tfjs-node': '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

/** One engine tried during selection. */
export interface EngineAttempt {
  engine: TfjsEngine;
  ok: boolean;
  /** Why it was skipped or failed (import error, backend init error); `selected` when it won. */
  reason: string;
}

/** What {@link initTfjs} chose. */
export interface EngineInfo {
  engine: TfjsEngine;
  /** tfjs backend name (`tensorflow` for the tfjs-node engines). */
  backend: string;
  /** Compute threads the backend uses (1 for cpu and single-threaded wasm); null when unknown (tfjs-node). */
  threads: number | null;
  /** wasm only: whether the SIMD binary is used. */
  simd: boolean | null;
  /** Package versions: `tfjs-core` and the engine's package. */
  versions: Record<string, string>;
  /** How the engine was chosen. */
  requested: { engine: TfjsEngine | 'auto'; source: 'option' | 'env' | 'default' };
  /** Engines tried, in order. */
  tried: EngineAttempt[];
  /** Package whose import registered tfjs's gradients, or null (no training possible). */
  gradients: string | null;
  /** Whether the Conv2D gradient override of `conv-grad.ts` is installed (wasm). */
  conv2dGradOverride: boolean;
  /** wasm only: folder the .wasm binaries are loaded from. */
  wasmPath: string | null;
}

/** Options of {@link initTfjs}. */
export interface InitTfjsOptions {
  /** Engine to use; overrides `DIAD_TFJS_ENGINE`. An explicitly requested engine that fails throws. */
  engine?: TfjsEngine | 'auto';
}

const require = createRequire(import.meta.url);
let current: { key: string; info: Promise<EngineInfo> } | null = null;

function parseEngine(value: string, source: string): TfjsEngine | 'auto' {
  const v = value.trim().toLowerCase();
  if (v === 'auto' || (TFJS_ENGINES as readonly string[]).includes(v)) return v as TfjsEngine | 'auto';
  throw new Error(`${source}: unknown tfjs engine "${value}"; use one of auto, ${TFJS_ENGINES.join(', ')}`);
}

/**
 * Selects and initialises the tfjs backend, registers tfjs's gradients and (on wasm) the Conv2D
 * gradient override, and reports the result.
 *
 * Precedence: `options.engine`, then the `DIAD_TFJS_ENGINE` environment variable, then the
 * automatic order tfjs-node-gpu, tfjs-node, wasm, cpu. Idempotent: a second call with the same
 * request returns the same info (concurrent calls share one initialisation); a call requesting a
 * different engine switches the active backend.
 * @throws Error when a requested engine (option or env) cannot be loaded, naming the package and
 *   the reason, or when the env/option value is not an engine name.
 */
export async function initTfjs(options: InitTfjsOptions = {}): Promise<EngineInfo> {
  const fromEnv = env.tfjsEngine === 'auto' ? null : env.tfjsEngine;
  const requested =
    options.engine !== undefined
      ? { engine: parseEngine(options.engine, 'initTfjs option engine'), source: 'option' as const }
      : fromEnv
        ? { engine: parseEngine(fromEnv, `env.tfjsEngine (${TFJS_ENGINE_ENV})`), source: 'env' as const }
        : { engine: 'auto' as const, source: 'default' as const };
  const key = requested.engine;
  if (current && current.key === key) {
    const info = await current.info.catch(() => null);
    if (info && tf.getBackend() === info.backend) return info;
  }
  const p = select(requested);
  current = { key, info: p };
  p.catch(() => {
    if (current?.info === p) current = null;
  });
  return p;
}

async function select(requested: EngineInfo['requested']): Promise<EngineInfo> {
  const order = requested.engine === 'auto' ? TFJS_ENGINES : [requested.engine];
  const tried: EngineAttempt[] = [];
  for (const engine of order) {
    try {
      const partial = await activate(engine);
      tried.push({ engine, ok: true, reason: 'selected' });
      const gradients = await ensureGradients();
      const conv2dGradOverride = engine === 'wasm' && gradients !== null ? installConv2DGradOverride() : false;
      return { ...partial, engine, requested, tried, gradients, conv2dGradOverride };
    } catch (e) {
      tried.push({ engine, ok: false, reason: (e as Error).message.split('\n')[0] });
    }
  }
  const lines = tried.map((t) => `  ${t.engine} (${PACKAGES[t.engine]}): ${t.reason}`).join('\n');
  const how = requested.source === 'env' ? `${TFJS_ENGINE_ENV}=${requested.engine}` : `engine "${requested.engine}"`;
  throw new Error(
    requested.engine === 'auto'
      ? `no tfjs engine could be initialised:\n${lines}\nInstall @tensorflow/tfjs-backend-wasm or @tensorflow/tfjs-backend-cpu.`
      : `the requested tfjs ${how} could not be initialised:\n${lines}\nInstall ${PACKAGES[requested.engine]} or choose another engine (auto, ${TFJS_ENGINES.join(', ')}).`,
  );
}

type Activated = Pick<EngineInfo, 'backend' | 'threads' | 'simd' | 'versions' | 'wasmPath'>;

/** Imports an optional package; "not installed" when it does not resolve, else the load error. */
async function importOptional(spec: string): Promise<Record<string, unknown>> {
  if (!resolvePackage(spec).installed) throw new Error(`${spec} is not installed`);
  try {
    // A specifier in a variable: the optional packages need not exist at build time.
    return (await import(spec)) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${spec} failed to load: ${(e as Error).message}`);
  }
}

async function activate(engine: TfjsEngine): Promise<Activated> {
  const versions: Record<string, string> = { 'tfjs-core': tf.version_core };
  if (engine === 'tfjs-node' || engine === 'tfjs-node-gpu') {
    const mod = await importOptional(PACKAGES[engine]);
    if (!(await tf.setBackend('tensorflow'))) throw new Error(`${PACKAGES[engine]} loaded but the "tensorflow" backend did not initialise`);
    const v = (mod.version as Record<string, string> | undefined)?.[engine];
    if (v) versions[engine] = v;
    return { backend: 'tensorflow', threads: null, simd: null, versions, wasmPath: null };
  }
  if (engine === 'wasm') {
    const wasm = await importOptional(PACKAGES.wasm);
    const wasmPath = wasmDistFolder();
    // setWasmPaths throws once the backend is initialised (another module may have done it).
    if (!tf.findBackend('wasm')) (wasm.setWasmPaths as (p: string) => void)(wasmPath + '/');
    if (!(await tf.setBackend('wasm'))) throw new Error(`the wasm backend did not initialise (binaries in ${wasmPath})`);
    versions['tfjs-backend-wasm'] = String(wasm.version_wasm);
    return {
      backend: 'wasm',
      threads: (wasm.getThreadsCount as () => number)(),
      simd: tf.env().getBool('WASM_HAS_SIMD_SUPPORT'),
      versions,
      wasmPath,
    };
  }
  const cpu = await importOptional(PACKAGES.cpu);
  if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise');
  versions['tfjs-backend-cpu'] = String(cpu.version_cpu);
  return { backend: 'cpu', threads: 1, simd: null, versions, wasmPath: null };
}

/** The installed tfjs-backend-wasm's dist folder, checked to hold its binaries (no network fetch in Node). */
function wasmDistFolder(): string {
  const dir = dirname(require.resolve(PACKAGES.wasm));
  const missing = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm'].filter((f) => !existsSync(join(dir, f)));
  if (missing.length) throw new Error(`${dir} lacks ${missing.join(', ')}; reinstall @tensorflow/tfjs-backend-wasm`);
  return dir;
}

const GRADIENT_PACKAGES = ['@tensorflow/tfjs-layers', '@tensorflow/tfjs'];

/** Makes sure tfjs's gradients are registered; returns the package that did it, or null. */
async function ensureGradients(): Promise<string | null> {
  if (tf.getGradient(tf.Square)) return 'preregistered';
  for (const spec of GRADIENT_PACKAGES) {
    try {
      await import(spec);
      if (tf.getGradient(tf.Square)) return spec;
    } catch {
      // Not installed: try the next one; the report says none was found.
    }
  }
  return null;
}

/**
 * Throws unless tfjs's gradients are registered (training needs them).
 * @throws Error naming the package to install.
 */
export function assertGradientsRegistered(): void {
  if (!tf.getGradient(tf.Square)) {
    throw new Error(
      'tfjs has no gradients registered (the Node build of @tensorflow/tfjs-core ships none): install @tensorflow/tfjs-layers and call initTfjs() before training',
    );
  }
}

/** Whether one engine's package is installed (resolvable), without loading it. */
export interface EngineAvailability {
  engine: TfjsEngine;
  package: string;
  installed: boolean;
  version: string | null;
  /** Where it resolved, or why not. */
  detail: string;
}

/**
 * What tfjs engines are installed here, in selection order, plus the engine override in effect.
 * Resolves packages only (no native library is loaded); {@link initTfjs} reports what actually initialises.
 */
export function describeEngines(): { engines: EngineAvailability[]; envOverride: string | null; gradientPackages: EngineAvailability['detail'][] } {
  const engines = TFJS_ENGINES.map((engine) => {
    const pkg = PACKAGES[engine];
    const found = resolvePackage(pkg);
    return { engine, package: pkg, ...found };
  });
  const gradientPackages = GRADIENT_PACKAGES.map((p) => {
    const r = resolvePackage(p);
    return r.installed ? `${p}@${r.version}` : `${p}: ${r.detail}`;
  });
  return { engines, envOverride: env.tfjsEngine === 'auto' ? null : env.tfjsEngine, gradientPackages };
}

function resolvePackage(pkg: string): Pick<EngineAvailability, 'installed' | 'version' | 'detail'> {
  let main: string;
  try {
    main = require.resolve(pkg);
  } catch {
    return { installed: false, version: null, detail: 'not installed' };
  }
  // Walk up from the entry file to the package's own package.json.
  for (let dir = dirname(main); dir !== dirname(dir); dir = dirname(dir)) {
    const pj = join(dir, 'package.json');
    if (!existsSync(pj)) continue;
    const meta = JSON.parse(readFileSync(pj, 'utf8')) as { name?: string; version?: string };
    if (meta.name === pkg) return { installed: true, version: meta.version ?? null, detail: dir };
  }
  return { installed: true, version: null, detail: dirname(main) };
}

/** A one-line human summary of an {@link EngineInfo}, e.g. for logs and `diad env`. */
export function formatEngineInfo(info: EngineInfo): string {
  const skipped = info.tried.filter((t) => !t.ok).map((t) => `${t.engine}: ${t.reason}`);
  const versions = Object.entries(info.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return (
    `tfjs engine ${info.engine} (backend ${info.backend}, threads ${info.threads ?? 'n/a'}` +
    (info.simd !== null ? `, simd ${info.simd}` : '') +
    `; ${versions}; chosen by ${info.requested.source}` +
    (info.gradients ? `; gradients from ${info.gradients}` : '; no gradients registered') +
    (info.conv2dGradOverride ? '; Conv2D gradient override' : '') +
    ')' +
    (skipped.length ? `; skipped ${skipped.join('; ')}` : '')
  );
}
