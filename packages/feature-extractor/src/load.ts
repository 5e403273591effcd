/** One entry point for every backbone: a shipped backbone by name (on tfjs or onnxruntime), or an ONNX file by path. */
import type { FeatureExtractor } from '@diad/core';
import { OnnxFeatureExtractor, type OnnxExtractorOptions } from '@diad/core/ort';
import {
  TFJS_BACKBONES,
  TfjsFeatureExtractor,
  parseBackbone,
  backboneProvenance,
  type TfjsBackboneName,
  type TfjsBackboneSpec,
  type TfjsExtractorOptions,
} from './tfjs-extractor.js';
import { kerasOnnxModel } from './keras-onnx.js';
import { initTfjs } from '@diad/core/tfjs';

/** A loaded backbone plus what to print about it. */
export interface LoadedBackbone {
  extractor: FeatureExtractor;
  /** Where the weights come from (package and model, or file path), and the engine. */
  provenance: string;
  /** The engine the extractor runs on (`tfjs`, `onnxruntime`, or what a registered extractor says). */
  engine: string;
  dispose(): Promise<void> | void;
}

/** Options of {@link loadBackbone}. */
export interface LoadBackboneOptions {
  /**
   * Engine of a shipped backbone: `tfjs` (default) or `ort`, which records the Keras backbone as an
   * ONNX graph for `imageSize` and runs it on onnxruntime-node (`onnx.providers`, default
   * `DIAD_ORT_PROVIDERS`, else cpu). ONNX files always run on onnxruntime.
   */
  engine?: 'tfjs' | 'ort';
  /** Square input size the ONNX graph of a shipped backbone is recorded for (`engine: 'ort'`). */
  imageSize?: number;
  tfjs?: TfjsExtractorOptions;
  onnx?: OnnxExtractorOptions;
}

/**
 * A shipped Keras backbone as an ONNX model for square `size` px inputs (ImageNet-normalised NCHW
 * in, its taps out, shallow first), recorded from its weights (no download).
 * @throws Error for a TF-graph backbone (it has no Keras layers to record).
 */
export async function shippedBackboneOnnx(name: TfjsBackboneName, size: number): Promise<{ bytes: Uint8Array; provenance: string }> {
  const spec: TfjsBackboneSpec = TFJS_BACKBONES[name];
  if (spec.kind !== 'layers') throw new Error(`backbone ${name} is a converted TF graph; only Keras backbones run on onnxruntime (use the tfjs engine for it)`);
  // tfjs decodes (and dequantises) the weight shards on the host side.
  await initTfjs();
  const provenance = `${backboneProvenance(name, spec.taps)} on onnxruntime (${size} px graph)`;
  return {
    bytes: kerasOnnxModel(parseBackbone(spec, spec.taps), spec.taps, { input: spec.input, height: size, width: size, metadata: { provenance } }),
    provenance,
  };
}

/**
 * Loads `nameOrPath`: a name from {@link TFJS_BACKBONES} (installed from npm, no network), or
 * a path ending in `.onnx` (user-exported, run by onnxruntime-node).
 * @throws Error for an unknown name (listing the known ones), an unloadable ONNX file, or
 *   `engine: 'ort'` with a TF-graph backbone, custom taps, an input resize, or no `imageSize`.
 */
export async function loadBackbone(nameOrPath: string, options: LoadBackboneOptions = {}): Promise<LoadedBackbone> {
  if (nameOrPath.toLowerCase().endsWith('.onnx')) {
    const ext = await OnnxFeatureExtractor.create(nameOrPath, options.onnx);
    return { extractor: ext, provenance: `ONNX ${nameOrPath} outputs ${ext.outputNames.join(', ')}`, engine: 'onnxruntime', dispose: () => ext.dispose() };
  }
  if (!(nameOrPath in TFJS_BACKBONES)) {
    throw new Error(`unknown backbone "${nameOrPath}"; use one of ${Object.keys(TFJS_BACKBONES).join(', ')} or the path of an .onnx file`);
  }
  const name = nameOrPath as TfjsBackboneName;
  if (options.engine === 'ort') {
    if (options.tfjs?.taps || options.tfjs?.inputSize) throw new Error(`backbone ${name} on onnxruntime: custom taps and input resizing are tfjs-only options`);
    if (!options.imageSize) throw new Error(`backbone ${name} on onnxruntime: give imageSize (the ONNX graph is recorded for one input size)`);
    const { bytes, provenance } = await shippedBackboneOnnx(name, options.imageSize);
    const ext = await OnnxFeatureExtractor.create(bytes, { ...options.onnx, label: `${name} (${options.imageSize} px ONNX graph)` });
    return { extractor: ext, provenance, engine: 'onnxruntime', dispose: () => ext.dispose() };
  }
  const ext = await TfjsFeatureExtractor.load(name, options.tfjs);
  return { extractor: ext, provenance: ext.provenance, engine: 'tfjs', dispose: () => ext.dispose() };
}
