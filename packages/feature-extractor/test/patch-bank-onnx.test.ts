import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { concatBatch } from '@diad/core';
import { OnnxFeatureExtractor } from '@diad/core/ort';
import { PatchMemoryBank } from '../src/index.js';
import { onnxFixtureDir, present } from './fixtures.js';
import { texture } from './images.js';

// In its own file (own worker): nothing else has initialised tfjs, as with an ONNX backbone in the CLI.
describe.skipIf(!present(onnxFixtureDir, 'patch bank on an ONNX backbone'))('PatchMemoryBank on an ONNX backbone', () => {
  it('fits and scores with tfjs initialised by the bank itself', async () => {
    const ext = await OnnxFeatureExtractor.create(join(onnxFixtureDir, 'resnet18_trunk.onnx'));
    const bank = await PatchMemoryBank.fit(ext, [concatBatch([texture(1, 64), texture(2, 64)])], 2, { bankSize: 50 });
    expect(bank.size).toBe(50);
    const map = await bank.score(texture(1, 64));
    expect(map.shape).toEqual([1, 1, 64, 64]);
    // An image of the training set lies on bank vectors: its distances are small next to another image's.
    const other = await bank.score(texture(3, 64));
    const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(map.data)).toBeLessThan(mean(other.data));
    bank.dispose();
    await ext.dispose();
  });
});
