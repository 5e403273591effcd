/**
 * onnxruntime-node: sessions and conversion between host tensors and ORT tensors.
 *
 * ONNX graphs at diad stage boundaries take and return NCHW, like the host tensors there.
 * Execution providers are chosen in one place: the `providers` option, else `DIAD_ORT_PROVIDERS`
 * (the `diad --providers` flag sets it), else CPU; a list is tried in order, so a later entry is
 * the fallback the user allowed (`webgpu,cpu`), and a single provider that cannot start is an
 * error. The CPU provider ships in the npm package; `webgpu` is built into onnxruntime-node 1.30's
 * Linux x64 binary and needs a Vulkan loader and a GPU driver; `cuda`/`tensorrt` need the libraries
 * onnxruntime-node's install script downloads (skipped where only the npm registry is reachable).
 */
import { promises as fs } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { OnnxRecorderOps } from '../onnx/recorder.js';
import { int32, mask, tensor, toLayout, type DType, type HostTensor } from '../tensor.js';
import { env as diadEnv } from '../env.js';

/** Environment variable listing execution providers in priority order, comma-separated. */
export const ORT_PROVIDERS_ENV = 'DIAD_ORT_PROVIDERS';

/** What each non-CPU provider needs, appended to the reason it could not start. */
const PROVIDER_NEEDS: Record<string, string> = {
  webgpu: "needs a Vulkan loader (Debian's libvulkan1) and a GPU with a Vulkan driver",
  cuda: 'needs CUDA 12 and the CUDA files of onnxruntime-node (`ONNXRUNTIME_NODE_INSTALL_CUDA=v12 node node_modules/onnxruntime-node/script/install`)',
  tensorrt: 'needs TensorRT and the CUDA files of onnxruntime-node',
};

// onnxruntime logs a provider that fails to load as a multi-line native error before it throws; the
// error reaches the caller anyway (with the reason and what the provider needs), so only fatal logs print.
if (!diadEnv.debug) ort.env.logLevel = 'fatal';

function providerFailure(provider: string, e: unknown): string {
  const first = ((e as Error).message ?? String(e)).trim().split('\n')[0];
  return PROVIDER_NEEDS[provider] ? `${first} (${provider} ${PROVIDER_NEEDS[provider]})` : first;
}

/**
 * A host tensor as an ORT tensor (shares the data buffer, no copy, except that a 4-D `NHWC` float
 * tensor is permuted to NCHW, the layout ONNX graphs use). float32, int32 and uint8 keep their type.
 */
export function toOrt(t: HostTensor<DType>): ort.Tensor {
  if (t.dtype === 'float32' && t.layout === 'NHWC' && t.shape.length === 4) {
    const nchw = toLayout(t as HostTensor<'float32'>, 'NCHW');
    return new ort.Tensor('float32', nchw.data, [...nchw.shape]);
  }
  switch (t.dtype) {
    case 'float32':
      return new ort.Tensor('float32', t.data as Float32Array, [...t.shape]);
    case 'int32':
      return new ort.Tensor('int32', t.data as Int32Array, [...t.shape]);
    case 'uint8':
      return new ort.Tensor('uint8', t.data as Uint8Array, [...t.shape]);
  }
}

/**
 * An ORT tensor as a host tensor. float32 stays float32 (4-D results get layout `NCHW`, others
 * `any`); int32 and int64 become int32; uint8 and bool become uint8 masks. The data is copied.
 * @param name the output's name, for error messages.
 * @throws Error for other element types, or int64 values outside the int32 range.
 */
export function fromOrt(t: ort.Tensor, name = 'tensor'): HostTensor<DType> {
  const shape = t.dims.map(Number);
  switch (t.type) {
    case 'float32':
      return tensor((t.data as Float32Array).slice(), shape, shape.length === 4 ? 'NCHW' : 'any');
    case 'int32':
      return int32(Int32Array.from(t.data as Int32Array), shape);
    case 'int64': {
      const src = t.data as BigInt64Array;
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = Number(src[i]);
        if (v > 2147483647 || v < -2147483648) throw new Error(`fromOrt: ${name}[${i}] = ${v} does not fit int32`);
        out[i] = v;
      }
      return int32(out, shape);
    }
    case 'uint8':
    case 'bool':
      return mask(Uint8Array.from(t.data as Uint8Array), shape, shape.length === 4 ? 'NCHW' : 'any');
    default:
      throw new Error(`fromOrt: ${name} has element type ${t.type}; only float32, int32, int64, uint8 and bool are supported`);
  }
}

/** Options of {@link createOrtSession}. */
export interface OrtSessionOptions {
  /** Execution providers in priority order (`cuda`, `cpu`, ...); default `env.ortProviders` (`DIAD_ORT_PROVIDERS`, else `cpu`). */
  providers?: readonly string[];
  /** Intra-op threads; default onnxruntime's choice (one per physical core). */
  threads?: number;
  /** onnxruntime's graph optimisations; default `all`. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
}

/** An open onnxruntime-node session over host tensors. */
export class OrtSession {
  private inputSet: Set<string> | null = null;

  /**
   * @param session the ORT session.
   * @param path the model file.
   * @param providers the execution providers in use.
   * @param skipped providers that failed to load, with the reason (a later one in the list was used).
   */
  constructor(
    readonly session: ort.InferenceSession,
    readonly path: string,
    readonly providers: readonly string[],
    readonly skipped: readonly { provider: string; reason: string }[],
  ) {}

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /**
   * Runs the graph. Inputs are keyed by graph input name; outputs come back keyed by output name
   * as host tensors (copies).
   * @throws Error naming the model file and the missing/unexpected inputs, or ORT's error.
   */
  async run(inputs: Record<string, HostTensor<DType>>): Promise<Record<string, HostTensor<DType>>> {
    const results = await this.runTensors(inputs);
    const out: Record<string, HostTensor<DType>> = {};
    for (const name of this.outputNames) {
      out[name] = fromOrt(results[name], name);
      results[name].dispose();
    }
    return out;
  }

  /**
   * Runs the graph and returns onnxruntime's output tensors as they are (their `data` is owned by
   * the caller; no copy), for hot loops such as training.
   * @throws Error as {@link run}.
   */
  async runTensors(inputs: Record<string, HostTensor<DType>>): Promise<ort.InferenceSession.ReturnType> {
    // A training graph has a thousand inputs, checked every step: a set, not a list scan.
    this.inputSet ??= new Set(this.inputNames);
    const missing = this.inputNames.filter((n) => !(n in inputs));
    const extra = Object.keys(inputs).filter((n) => !this.inputSet!.has(n));
    if (missing.length || extra.length) {
      throw new Error(
        `${this.path}: inputs do not match the graph (missing: [${missing.join(', ')}], unexpected: [${extra.join(', ')}]; the graph takes [${this.inputNames.join(', ')}])`,
      );
    }
    const feeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(inputs)) feeds[k] = toOrt(v);
    try {
      return await this.session.run(feeds);
    } catch (e) {
      throw new Error(`${this.path}: onnxruntime run failed: ${(e as Error).message}`);
    }
  }

  /** Frees the native session. */
  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The execution providers requested by option or `env.ortProviders` (`DIAD_ORT_PROVIDERS`), validated; `["cpu"]` by default.
 * @param source names the option in the error (default `option providers`).
 * @throws Error naming the source and the unknown providers.
 */
export function resolveOrtProviders(providers?: readonly string[], source = 'option providers'): string[] {
  const from = providers ? source : `env.ortProviders (${ORT_PROVIDERS_ENV})`;
  const list = (providers ?? diadEnv.ortProviders).map((p) => p.trim().toLowerCase()).filter(Boolean);
  const known = ort.listSupportedBackends().map((b) => b.name);
  const unknown = list.filter((p) => !known.includes(p));
  if (unknown.length || list.length === 0) {
    throw new Error(`${from}: unknown execution provider(s) [${unknown.join(', ')}]; onnxruntime-node ${ort.env.versions.node} knows ${known.join(', ')}`);
  }
  return list;
}

/**
 * Opens an ONNX model with onnxruntime-node, from a file or from model bytes (`label` names them in
 * messages). Providers are tried in order: when one fails to load (e.g. CUDA libraries absent) the
 * session is created with the rest of the list, and the failure is kept in `skipped`.
 * @throws Error naming the file when it is missing or not a valid ONNX model, or when no provider loads.
 */
export async function createOrtSession(source: string | Uint8Array, options: OrtSessionOptions & { label?: string } = {}): Promise<OrtSession> {
  const providers = resolveOrtProviders(options.providers);
  const path = typeof source === 'string' ? source : (options.label ?? 'in-memory ONNX model');
  if (typeof source === 'string') {
    const stat = await fs.stat(source).catch(() => null);
    if (!stat?.isFile()) throw new Error(`ONNX model ${source} does not exist (or is not a file); check the path or export the model first`);
  }
  const skipped: { provider: string; reason: string }[] = [];
  for (let i = 0; i < providers.length; i++) {
    const eps = providers.slice(i);
    try {
      const so: ort.InferenceSession.SessionOptions = {
        executionProviders: eps,
        ...(options.graphOptimizationLevel ? { graphOptimizationLevel: options.graphOptimizationLevel } : {}),
        ...((options.threads ?? diadEnv.ortThreads) ? { intraOpNumThreads: options.threads ?? diadEnv.ortThreads! } : {}),
      };
      // Two overloads (path, bytes): a union argument matches neither.
      const session = typeof source === 'string' ? await ort.InferenceSession.create(source, so) : await ort.InferenceSession.create(source, so);
      return new OrtSession(session, path, eps, skipped);
    } catch (e) {
      const msg = (e as Error).message;
      if (/load model|protobuf|invalid model|modelproto/i.test(msg) && !/provider|shared library/i.test(msg)) {
        throw new Error(`${path} is not a valid ONNX model (${msg.trim()}); the file is corrupt or truncated: re-export or re-download it`);
      }
      skipped.push({ provider: providers[i], reason: providerFailure(providers[i], e) });
    }
  }
  throw new Error(
    `${path}: no execution provider could be loaded:\n${skipped.map((s) => `  ${s.provider}: ${s.reason}`).join('\n')}\n` +
      `Add cpu to the list (${ORT_PROVIDERS_ENV}=cuda,cpu) or install the provider's libraries.`,
  );
}

/** Whether a provider can start here, and why not. */
export interface ProviderProbe {
  provider: string;
  ok: boolean;
  reason?: string;
}

/**
 * Tries each provider alone on a one-node model (for `diad env`).
 * @param providers default: the requested list ({@link resolveOrtProviders}).
 */
export async function probeOrtProviders(providers?: readonly string[]): Promise<ProviderProbe[]> {
  const rec = new OnnxRecorderOps({});
  const bytes = rec.toModel({ y: rec.custom('Identity', [rec.graphInput('x', [1], false)], [1]) });
  const out: ProviderProbe[] = [];
  for (const provider of resolveOrtProviders(providers)) {
    try {
      const s = await ort.InferenceSession.create(bytes, { executionProviders: [provider] });
      await s.release();
      out.push({ provider, ok: true });
    } catch (e) {
      out.push({ provider, ok: false, reason: providerFailure(provider, e) });
    }
  }
  return out;
}

/** onnxruntime-node's version and its execution providers (bundled or needing extra libraries). */
export function describeOrt(): { version: string; providers: { name: string; bundled: boolean }[]; envProviders: string | null } {
  return {
    version: ort.env.versions.node ?? ort.env.versions.common,
    providers: ort.listSupportedBackends().map((b) => ({ name: b.name, bundled: b.bundled })),
    envProviders: diadEnv.ortProviders.join(','),
  };
}
