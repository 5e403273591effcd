import { describe, expect, it } from 'vitest';
import { checkFeatureExtractor, featureExtractors } from '../src/registry.js';
import { DEFAULT_BACKBONE, TFJS_BACKBONES } from '../src/tfjs-extractor.js';

describe('feature extractor registry', () => {
  it('registers every shipped backbone, default and onnx; checks specs before loading anything', async () => {
    expect(featureExtractors.kinds()).toEqual([...Object.keys(TFJS_BACKBONES), 'default', 'onnx']);
    expect(DEFAULT_BACKBONE in TFJS_BACKBONES).toBe(true);
    await expect(checkFeatureExtractor({ kind: 'resnet50' })).resolves.toBeUndefined();
    await expect(checkFeatureExtractor({ kind: 'resnet9000' }, '--set featureExtractor')).rejects.toThrow(
      /--set featureExtractor\.kind: unknown feature extractor "resnet9000"; registered: resnet50/,
    );
    await expect(checkFeatureExtractor({ kind: 'resnet50', path: '/x.onnx' })).rejects.toThrow(/the shipped backbone resnet50 takes no options \(got path\)/);
    await expect(checkFeatureExtractor({ kind: 'onnx' })).rejects.toThrow(/kind onnx needs a path/);
    await expect(checkFeatureExtractor({ kind: 'onnx', path: '/nope/missing.onnx' })).rejects.toThrow(/\/nope\/missing\.onnx: no such file/);
  });
});
