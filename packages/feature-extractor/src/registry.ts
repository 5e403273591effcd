/**
 * The feature extractors by `kind`, as configs and command lines name them: each shipped backbone
 * by its name (`resnet50`, `mobilenet_v2`, ...; `default` = {@link DEFAULT_BACKBONE}) and `onnx`
 * (a user ONNX file, `{ kind: 'onnx', path }`). A new backbone is one file plus one
 * `featureExtractors.register(kind, entry)` call, from this package or from user code.
 */
import { readFile, stat } from 'node:fs/promises';
import { Registry, modelPath } from '@diad/core';
import { loadBackbone, shippedBackboneOnnx, type LoadedBackbone } from './load.js';
import { DEFAULT_BACKBONE, TFJS_BACKBONES, type TfjsBackboneName } from './tfjs-extractor.js';

/** A feature extractor in a config: its kind and its own options (e.g. `path` for `onnx`). */
export interface FeatureExtractorSpec {
  kind: string;
  [option: string]: unknown;
}

/** What the caller offers a feature extractor. */
export interface FeatureExtractorContext {
  /** The engine the caller prefers (`ort`: onnxruntime where the extractor can run there). */
  engine: 'tfjs' | 'ort';
  /** Side of the square images it will see, pixels. */
  imageSize: number;
}

/** A registered feature extractor. */
export interface FeatureExtractorEntry {
  /**
   * Loads it.
   * @param source the config field or flag the spec came from, for error messages.
   */
  load(spec: FeatureExtractorSpec, context: FeatureExtractorContext, source: string): Promise<LoadedBackbone>;
  /** Checks the spec without loading weights (run before long work starts); throws naming `source` and the fix. */
  check?(spec: FeatureExtractorSpec, source: string): Promise<void>;
  /** How many feature maps (levels) it gives, when known without loading it; absent: known only once loaded. */
  mapCount?(spec: FeatureExtractorSpec): number;
  /**
   * Its ONNX form for a deployment bundle (ImageNet-normalised `[N, 3, S, S]` in, one NCHW map per
   * level out, shallow first, as `extract` returns them); absent or null: it has none.
   */
  exportOnnx?(spec: FeatureExtractorSpec, context: FeatureExtractorContext, source: string): Promise<FeatureExtractorOnnx | null>;
}

/** A feature extractor as an ONNX model. */
export interface FeatureExtractorOnnx {
  bytes: Uint8Array;
  /** Where its weights come from. */
  provenance: string;
}

/** The feature extractors by kind. */
export const featureExtractors = new Registry<FeatureExtractorEntry>('feature extractor');

/** A shipped backbone: a Keras one runs on onnxruntime when asked (recorded as ONNX), a TF-graph one stays on tfjs. */
function shipped(name: TfjsBackboneName): FeatureExtractorEntry {
  return {
    async check(spec, source) {
      const extra = Object.keys(spec).filter((k) => k !== 'kind');
      if (extra.length)
        throw new Error(
          `${source}: the shipped backbone ${spec.kind} takes no options (got ${extra.join(', ')}); for an ONNX file use { "kind": "onnx", "path": ... }`,
        );
    },
    mapCount: () => TFJS_BACKBONES[name].taps.length,
    load: (_spec, ctx) => loadBackbone(name, ctx.engine === 'ort' && TFJS_BACKBONES[name].kind === 'layers' ? { engine: 'ort', imageSize: ctx.imageSize } : {}),
    exportOnnx: async (_spec, ctx) => (TFJS_BACKBONES[name].kind === 'layers' ? shippedBackboneOnnx(name, ctx.imageSize) : null),
  };
}

for (const name of Object.keys(TFJS_BACKBONES) as TfjsBackboneName[]) featureExtractors.register(name, shipped(name));
featureExtractors.register('default', shipped(DEFAULT_BACKBONE));

const onnxPath = (spec: FeatureExtractorSpec, source: string): string => {
  if (typeof spec.path !== 'string' || !spec.path)
    throw new Error(`${source}: kind onnx needs a path (the ONNX file with the stride 4/8/16 outputs), e.g. { "kind": "onnx", "path": "wrn50.onnx" }`);
  // A relative path resolves against env.modelsDir (DIAD_MODELS_DIR) when one is set.
  return modelPath(spec.path);
};

featureExtractors.register('onnx', {
  load: (spec, _ctx, source) => loadBackbone(onnxPath(spec, source)),
  exportOnnx: async (spec, _ctx, source) => {
    const path = onnxPath(spec, source);
    return { bytes: new Uint8Array(await readFile(path)), provenance: `ONNX ${path}` };
  },
  async check(spec, source) {
    const path = onnxPath(spec, source);
    if (!(await stat(path).catch(() => null))?.isFile())
      throw new Error(`${source}: ${path}: no such file; give the path of an exported ONNX feature extractor (see @diad/feature-extractor's README)`);
  },
});

/**
 * Loads the feature extractor a spec names.
 * @param source the config field or flag it came from (named in errors).
 * @throws Error for an unknown kind (listing the registered ones) or from the extractor.
 */
export function loadFeatureExtractor(spec: FeatureExtractorSpec, context: FeatureExtractorContext, source = 'featureExtractor'): Promise<LoadedBackbone> {
  return featureExtractors.get(spec.kind, `${source}.kind`).load(spec, context, source);
}

/**
 * The ONNX form of the feature extractor a spec names, for a deployment bundle.
 * @returns null when it has none (a TF-graph backbone, or a registered extractor without `exportOnnx`).
 * @throws Error for an unknown kind or from the extractor.
 */
export function featureExtractorOnnx(
  spec: FeatureExtractorSpec,
  context: FeatureExtractorContext,
  source = 'featureExtractor',
): Promise<FeatureExtractorOnnx | null> {
  const entry = featureExtractors.get(spec.kind, `${source}.kind`);
  return entry.exportOnnx ? entry.exportOnnx(spec, context, source) : Promise.resolve(null);
}

/**
 * Checks a spec before any long work: the kind is registered and its own check passes.
 * @throws Error naming `source`, listing the registered kinds or saying the fix.
 */
export async function checkFeatureExtractor(spec: FeatureExtractorSpec, source = 'featureExtractor'): Promise<void> {
  await featureExtractors.get(spec.kind, `${source}.kind`).check?.(spec, source);
}

/**
 * How many feature maps the extractor gives, when its entry knows without loading it (the shipped
 * backbones: 3); null otherwise (an ONNX file: known once loaded).
 * @throws Error for an unknown kind, listing the registered ones.
 */
export function featureMapCount(spec: FeatureExtractorSpec, source = 'featureExtractor'): number | null {
  return featureExtractors.get(spec.kind, `${source}.kind`).mapCount?.(spec) ?? null;
}
