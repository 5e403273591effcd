/**
 * Reads the tfjs models that the `nsfwjs` npm package ships in its tarball (MobileNetV2,
 * MobileNetV2 x1.4 "mid", InceptionV3), offline. nsfwjs wraps each model's JSON and its base64
 * weight shards in UMD modules under `dist/models/<name>/`, and its `exports` map blocks deep
 * imports, so the package folder is resolved and the files are required by absolute path.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { io } from '@tensorflow/tfjs-core';

const require = createRequire(import.meta.url);

/** The model folders nsfwjs ships. */
export type NsfwjsModelName = 'mobilenet_v2' | 'mobilenet_v2_mid' | 'inception_v3';

interface WeightsGroup {
  paths: string[];
  weights: io.WeightsManifestEntry[];
}

interface ModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string;
  modelTopology: Record<string, unknown>;
  weightsManifest: WeightsGroup[];
}

/** The folder of the installed nsfwjs package. @throws Error when nsfwjs is not installed. */
export function nsfwjsRoot(): string {
  let main: string;
  try {
    main = require.resolve('nsfwjs');
  } catch {
    throw new Error('the npm package "nsfwjs" is not installed; it ships the pretrained tfjs backbones (run pnpm install in the repository)');
  }
  for (let dir = dirname(main); dir !== dirname(dir); dir = dirname(dir)) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj) && JSON.parse(readFileSync(pj, 'utf8')).name === 'nsfwjs') return dir;
  }
  throw new Error(`cannot find the nsfwjs package folder above ${main}`);
}

/** The installed nsfwjs version (recorded as provenance). */
export function nsfwjsVersion(): string {
  return JSON.parse(readFileSync(join(nsfwjsRoot(), 'package.json'), 'utf8')).version;
}

function bytesPerElement(spec: io.WeightsManifestEntry): number {
  const q = spec.quantization?.dtype;
  if (q) return q === 'uint8' ? 1 : 2;
  return spec.dtype === 'float32' || spec.dtype === 'int32' ? 4 : 1;
}

/** Bytes one weight takes in a tfjs shard (quantised or not). */
function weightBytes(spec: io.WeightsManifestEntry): number {
  return spec.shape.reduce((a, d) => a * d, 1) * bytesPerElement(spec);
}

/**
 * The weights of a tfjs manifest whose shard bytes are at hand, keeping those `keepWeight` accepts
 * (in manifest order): the `weightSpecs` and `weightData` of tfjs model artifacts.
 * @param source names the model in the error.
 * @throws Error when a group's specs do not cover its shards' bytes exactly.
 */
export function selectWeights(
  groups: readonly { weights: readonly io.WeightsManifestEntry[]; bytes: Uint8Array }[],
  keepWeight: ((weightName: string) => boolean) | undefined,
  source: string,
): Pick<io.ModelArtifacts, 'weightSpecs' | 'weightData'> {
  const specs: io.WeightsManifestEntry[] = [];
  const chunks: Uint8Array[] = [];
  for (const { weights, bytes } of groups) {
    let off = 0;
    for (const spec of weights) {
      const n = weightBytes(spec);
      if (!keepWeight || keepWeight(spec.name)) {
        specs.push(spec);
        chunks.push(bytes.subarray(off, off + n));
      }
      off += n;
    }
    if (off !== bytes.length) throw new Error(`${source}: weight specs cover ${off} bytes but the shards hold ${bytes.length}`);
  }
  const all = Buffer.concat(chunks);
  return { weightSpecs: specs, weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) };
}

/**
 * Loads one nsfwjs model as tfjs model artifacts (topology, weight specs, weight bytes).
 * @param keepWeight when given, only the weights it accepts are kept (in manifest order),
 *   so a pruned topology loads with strict weight checking.
 * @throws Error naming the file when the package layout is not the expected one.
 */
export function loadNsfwjsArtifacts(name: NsfwjsModelName, keepWeight?: (weightName: string) => boolean): io.ModelArtifacts {
  const dir = join(nsfwjsRoot(), 'dist', 'models', name);
  const modelFile = join(dir, 'model.min.js');
  if (!existsSync(modelFile)) throw new Error(`nsfwjs ${nsfwjsVersion()} has no ${modelFile}; this nsfwjs version ships its models differently`);
  const json = require(modelFile) as ModelJson;
  if (!json?.modelTopology || !Array.isArray(json.weightsManifest)) throw new Error(`${modelFile} does not hold a tfjs model JSON`);
  const groups = json.weightsManifest.map((group) => ({
    weights: group.weights,
    bytes: Buffer.concat(
      group.paths.map((p) => {
        const b64 = require(join(dir, `${p}.min.js`)) as unknown;
        if (typeof b64 !== 'string') throw new Error(`${join(dir, p)}.min.js does not hold a base64 weight shard`);
        return Buffer.from(b64, 'base64');
      }),
    ),
  }));
  return {
    modelTopology: json.modelTopology as io.ModelArtifacts['modelTopology'],
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    ...selectWeights(groups, keepWeight, `nsfwjs ${name}`),
  };
}

/** Makes a graph-model topology's `Placeholder` inputs accept any batch and spatial size. */
export function freeGraphInputShape(topology: Record<string, unknown>): Record<string, unknown> {
  const nodes = (topology.node as { op: string; attr?: { shape?: { shape?: { dim?: { size: string }[] } } } }[]).map((n) => {
    const dims = n.attr?.shape?.shape?.dim;
    if (n.op !== 'Placeholder' || !dims || dims.length !== 4) return n;
    return { ...n, attr: { ...n.attr, shape: { shape: { dim: [{ size: '-1' }, { size: '-1' }, { size: '-1' }, dims[3]] } } } };
  });
  return { ...topology, node: nodes };
}
