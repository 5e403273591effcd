/**
 * Feature extractors from user-supplied ONNX files (e.g. torchvision ResNet-50 or
 * WideResNet-50-2 cut after layer3, the paper's backbone, exported with outputs
 * layer1..layer3), run with onnxruntime-node on the CPU or, where the user installed it, CUDA.
 */
import { concatBatch, sliceBatch, tensor, type FeatureExtractor, type HostTensor } from '@diad/core';
import { createOrtSession, type OrtSession } from '@diad/core/ort';

/** Options of {@link OnnxFeatureExtractor.create}. */
export interface OnnxExtractorOptions {
  /** Output names to return, shallow to deep; default all outputs of the model in file order. */
  outputs?: readonly string[];
  /**
   * Execution providers in priority order, e.g. `['cuda', 'cpu']` (CUDA needs onnxruntime-node's
   * CUDA files and a GPU; a provider that fails to load is skipped). Default: `env.ortProviders` (`DIAD_ORT_PROVIDERS`, else `cpu`).
   */
  providers?: readonly string[];
  /** Images per `session.run`; bounds memory. Default 8. */
  batchSize?: number;
  /** Intra-op threads (onnxruntime default when unset). */
  threads?: number;
  /** Spatial size of the probe run that measures the strides when the model's input is dynamic; default 64. */
  probeSize?: number;
}

/**
 * A {@link FeatureExtractor} over an ONNX model that maps ImageNet-normalised NCHW images
 * `[N, 3, H, W]` (torchvision's convention, no conversion done here) to NCHW feature maps.
 * The strides are measured once at creation by a probe run.
 */
export class OnnxFeatureExtractor implements FeatureExtractor {
  private constructor(
    private readonly session: OrtSession,
    private readonly inputName: string,
    readonly outputNames: readonly string[],
    readonly strides: readonly number[],
    private readonly batchSize: number,
    /** Where the model came from (the path). */
    readonly source: string,
  ) {}

  /**
   * Loads an ONNX file (or model bytes) and measures the output strides.
   * @param source a file path, or the model's bytes (then `options.label` names it in errors).
   * @throws Error when the file is missing or unreadable, the model has not exactly one image input,
   *   a requested output does not exist, an output is not 4-D, or CUDA was requested but is unavailable.
   */
  static async create(source: string | Uint8Array, options: OnnxExtractorOptions & { label?: string } = {}): Promise<OnnxFeatureExtractor> {
    const { batchSize = 8, threads, probeSize = 64 } = options;
    const path = typeof source === 'string' ? source : (options.label ?? 'in-memory ONNX backbone');
    const session = await createOrtSession(source, { providers: options.providers, threads, label: path });
    if (session.inputNames.length !== 1) {
      throw new Error(`ONNX backbone ${path} has inputs [${session.inputNames.join(', ')}]; expected exactly one NCHW image input`);
    }
    const outputs = options.outputs ?? session.outputNames;
    for (const o of outputs) {
      if (!session.outputNames.includes(o)) throw new Error(`ONNX backbone ${path} has no output "${o}"; it has [${session.outputNames.join(', ')}]`);
    }
    const inputName = session.inputNames[0];
    const meta = session.session.inputMetadata[0];
    const dims = meta?.isTensor ? meta.shape : [];
    const fixed = (i: number, dflt: number) => (typeof dims[i] === 'number' && (dims[i] as number) > 0 ? (dims[i] as number) : dflt);
    const [pb, pc, ph, pw] = [fixed(0, 1), fixed(1, 3), fixed(2, probeSize), fixed(3, probeSize)];
    const probe = await run(session, inputName, outputs, tensor(new Float32Array(pb * pc * ph * pw), [pb, pc, ph, pw], 'NCHW'), path);
    const strides = probe.map((t, i) => {
      if (t.shape.length !== 4)
        throw new Error(`ONNX backbone ${path}: output "${outputs[i]}" has shape [${t.shape.join(', ')}], expected a 4-D NCHW feature map`);
      // Nominal stride: valid padding (e.g. InceptionV3) makes maps a little smaller than size / stride.
      return 2 ** Math.round(Math.log2(ph / t.shape[2]));
    });
    return new OnnxFeatureExtractor(session, inputName, outputs, strides, batchSize, path);
  }

  /**
   * @param images `[N, 3, H, W]` ImageNet-normalised (or whatever the model was exported to take).
   * @returns one `[N, C_l, H / s_l, W / s_l]` map per output, in {@link outputNames} order.
   */
  async extract(images: HostTensor): Promise<HostTensor[]> {
    if (images.shape.length !== 4) throw new Error(`OnnxFeatureExtractor (${this.source}): images must be [N, 3, H, W], got [${images.shape.join(', ')}]`);
    const n = images.shape[0];
    const parts: HostTensor[][] = [];
    for (let s = 0; s < n; s += this.batchSize) {
      const chunk = n <= this.batchSize ? images : sliceBatch(images, s, Math.min(n, s + this.batchSize));
      parts.push(await run(this.session, this.inputName, this.outputNames, chunk, this.source));
    }
    return this.outputNames.map((_, l) => (parts.length === 1 ? parts[0][l] : concatBatch(parts.map((p) => p[l]))));
  }

  /** Execution providers in use (the first one that loaded, and the rest of the list). */
  get providers(): readonly string[] {
    return this.session.providers;
  }

  /** Frees the onnxruntime session. */
  async dispose(): Promise<void> {
    await this.session.release();
  }
}

async function run(session: OrtSession, inputName: string, outputs: readonly string[], x: HostTensor, source: string): Promise<HostTensor[]> {
  const res = await session.run({ [inputName]: x.layout === 'NHWC' ? x : { ...x, layout: 'NCHW' } });
  return outputs.map((o) => {
    const t = res[o];
    if (t.dtype !== 'float32') throw new Error(`ONNX backbone ${source}: output "${o}" is ${t.dtype}, expected float32`);
    return t as HostTensor;
  });
}
