/**
 * The pipeline's stages on onnxruntime sessions of exported graphs: `OrtAutoencoder`
 * (`Autoencoder`), `OrtGuidedDenoiser` (the `GuidedDenoiser` a DDIM sampler drives) and
 * `OnnxFeatureExtractor` (`FeatureExtractor`). The graphs are recorded by @diad/autoencoder,
 * @diad/sg-diffusion and @diad/feature-extractor; running them needs only this module, so a
 * deployed bundle loads without the training packages.
 */
import type { GuidedDenoiser, GuidedEps } from '../ddim.js';
import { Rng } from '../random.js';
import type { Autoencoder, FeatureExtractor } from '../stages.js';
import { concatBatch, int32, sliceBatch, tensor, type HostTensor } from '../tensor.js';
import { createOrtSession, type OrtSession } from './session.js';

/** The two graphs of an exported autoencoder (@diad/autoencoder `exportAutoencoderOnnx`). */
export interface AutoencoderOnnxFiles {
  /** `image` `[N, 3, H, W]` (image convention) + `noise` `[N, C, H/f, W/f]` -> scaled `latent`. */
  encode: string;
  /** scaled `latent` `[N, C, H/f, W/f]` -> `image` `[N, 3, H, W]` (image convention). */
  decode: string;
}

/** The latent geometry of an exported autoencoder. */
export interface LatentGeometry {
  /** Latent channels C (the config's `embed_dim`). */
  latentChannels: number;
  /** Spatial downsampling factor f. */
  downsampleFactor: number;
}

/** Options of the onnxruntime stages' sessions. */
export interface OrtStageOptions {
  /** Execution providers in priority order (default `env.ortProviders`: `DIAD_ORT_PROVIDERS`, else cpu). */
  providers?: readonly string[];
  /** Intra-op threads (default: onnxruntime's choice, one per physical core). */
  threads?: number;
}

/**
 * The autoencoder stage (`Autoencoder`) on onnxruntime sessions of an exported AutoencoderKL
 * (@diad/autoencoder `exportAutoencoderOnnx`): the same results as its tfjs stage with pixel
 * range `imagenet` (the official DiAD convention) and the exported scale factor.
 */
export class OrtAutoencoder implements Autoencoder {
  readonly latentChannels: number;
  readonly downsampleFactor: number;

  private constructor(
    geometry: LatentGeometry,
    readonly encoder: OrtSession,
    readonly decoder: OrtSession,
  ) {
    this.latentChannels = geometry.latentChannels;
    this.downsampleFactor = geometry.downsampleFactor;
  }

  /**
   * Opens the two sessions.
   * @throws Error naming a missing/corrupt model file or a provider that cannot load.
   */
  static async open(files: AutoencoderOnnxFiles, geometry: LatentGeometry, options: OrtStageOptions = {}): Promise<OrtAutoencoder> {
    const encoder = await createOrtSession(files.encode, options);
    const decoder = await createOrtSession(files.decode, options).catch(async (e) => {
      await encoder.release();
      throw e;
    });
    return new OrtAutoencoder(geometry, encoder, decoder);
  }

  /**
   * Images `[N, 3, H, W]` (ImageNet-normalised) to scaled latents; `sample` draws the noise from
   * `Rng(seed)` as `AutoencoderKLStage` does, otherwise the posterior mode.
   * @throws Error on a size the exported graph does not take (onnxruntime's message, with the file).
   */
  async encode(images: HostTensor, options: { sample?: boolean; seed?: number } = {}): Promise<HostTensor> {
    const [n, , h, w] = images.shape;
    const f = this.downsampleFactor;
    const shape = [n, this.latentChannels, Math.floor(h / f), Math.floor(w / f)];
    const size = shape.reduce((a, d) => a * d, 1);
    const noise = tensor(options.sample ? new Rng(options.seed ?? 0).normals(size) : new Float32Array(size), shape, 'NCHW');
    return (await this.encoder.run({ image: images, noise })).latent as HostTensor;
  }

  /** Scaled latents `[N, embed_dim, h, w]` to images `[N, 3, h*f, w*f]` (ImageNet-normalised). */
  async decode(latents: HostTensor): Promise<HostTensor> {
    return (await this.decoder.run({ latent: latents })).image as HostTensor;
  }

  /** Frees the native sessions. */
  async release(): Promise<void> {
    await this.encoder.release();
    await this.decoder.release();
  }
}

/** The two graphs of an exported denoiser (@diad/sg-diffusion `exportDenoiserOnnx`). */
export interface DenoiserOnnxFiles {
  /** `hint` (the images) -> `guided_hint` (ControlNet `input_hint_block`). */
  hint: string;
  /** `latent`, `guided_hint`, `timestep` (int32), `context` -> `eps`: one eps-prediction of SG network + UNet. */
  step: string;
}

/**
 * An exported denoiser (@diad/sg-diffusion `exportDenoiserOnnx`) on onnxruntime sessions, as a
 * {@link GuidedDenoiser} any sampler drives: the hint block runs once per batch, the step graph
 * once per timestep (sessions built once; the guided hint and the context reused across steps).
 */
export class OrtGuidedDenoiser implements GuidedDenoiser {
  private readonly contexts = new Map<number, HostTensor>();

  private constructor(
    readonly hint: OrtSession,
    readonly step: OrtSession,
    /** The context of one item, `[1, L, D]`. */
    readonly context: HostTensor,
  ) {}

  /**
   * Opens the two sessions.
   * @param context `[1, L, D]` (e.g. @diad/sg-diffusion `hostContext(config, params, constant, 1)`).
   * @throws Error naming a missing/corrupt model file or a provider that cannot load.
   */
  static async open(files: DenoiserOnnxFiles, context: HostTensor, options: OrtStageOptions = {}): Promise<OrtGuidedDenoiser> {
    if (context.shape.length !== 3 || context.shape[0] !== 1)
      throw new Error(`OrtGuidedDenoiser: context must be [1, L, D], got [${context.shape.join(', ')}]`);
    const so = { providers: options.providers, threads: options.threads };
    const hint = await createOrtSession(files.hint, so);
    const step = await createOrtSession(files.step, so).catch(async (e) => {
      await hint.release();
      throw e;
    });
    return new OrtGuidedDenoiser(hint, step, context);
  }

  private contextFor(n: number): HostTensor {
    let c = this.contexts.get(n);
    if (!c) {
      const per = this.context.data.length;
      const data = new Float32Array(per * n);
      for (let b = 0; b < n; b++) data.set(this.context.data as Float32Array, b * per);
      c = tensor(data, [n, this.context.shape[1], this.context.shape[2]]);
      this.contexts.set(n, c);
    }
    return c;
  }

  /**
   * @param hint the input images `[N, 3, f*h, f*w]` (f = `hint_downsample`) (image convention).
   * @throws Error on shapes the exported graphs do not take (onnxruntime's message, with the file).
   */
  async guide(hint: HostTensor): Promise<GuidedEps> {
    const n = hint.shape[0];
    const guided = (await this.hint.run({ hint })).guided_hint;
    const context = this.contextFor(n);
    return {
      eps: async (x, t) =>
        (await this.step.run({ latent: x, guided_hint: guided, timestep: int32(new Int32Array(n).fill(t), [n]), context })).eps as HostTensor,
      dispose: () => {},
    };
  }

  /** Frees the native sessions. */
  async release(): Promise<void> {
    await this.hint.release();
    await this.step.release();
  }
}

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
