import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import '@tensorflow/tfjs-backend-cpu';
import { concatBatch, type HostTensor } from '@diad/core';
import { TfjsFeatureExtractor } from '../src/index.js';
import { texture } from './images.js';

/** Mean cosine similarity of two maps [1, C, h, w] over the interior (a border of `b` cells excluded). */
function meanCos(a: HostTensor, b: HostTensor, border: number): number {
  const [, c, h, w] = a.shape;
  let sum = 0;
  let n = 0;
  for (let y = border; y < h - border; y++)
    for (let x = border; x < w - border; x++) {
      let d = 0,
        na = 0,
        nb = 0;
      for (let ch = 0; ch < c; ch++) {
        const i = (ch * h + y) * w + x;
        d += a.data[i] * b.data[i];
        na += a.data[i] ** 2;
        nb += b.data[i] ** 2;
      }
      sum += d / Math.sqrt(na * nb + 1e-12);
      n++;
    }
  return sum / n;
}

describe('mobilenet_v2 (nsfwjs) tfjs backbone', () => {
  let ext: TfjsFeatureExtractor;
  beforeAll(async () => {
    // Any network access during loading fails the test.
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockImplementation(() => {
      throw new Error('network access attempted');
    });
    ext = await TfjsFeatureExtractor.load('mobilenet_v2');
    expect(fetchSpy).not.toHaveBeenCalled();
    fetchSpy.mockRestore();
  });
  afterAll(() => ext?.dispose());

  it('gives finite stride 4/8/16 maps for 256 px input, batched', async () => {
    expect(ext.strides).toEqual([4, 8, 16]);
    const x = concatBatch([texture(1), texture(2), texture(3)]);
    const maps = await TfjsFeatureExtractor.prototype.extract.call(ext, x);
    expect(maps.map((m) => m.shape)).toEqual(ext.strides.map((s) => [3, maps[ext.strides.indexOf(s)].shape[1], 256 / s, 256 / s]));
    for (const m of maps) {
      expect(m.layout).toBe('NCHW');
      expect(m.data.every(Number.isFinite)).toBe(true);
      expect(m.data.some((v) => v !== 0)).toBe(true);
    }
    // Batching does not change the result: image 2 alone equals image 2 of the batch.
    const single = await ext.extract(texture(2));
    for (let l = 0; l < maps.length; l++) {
      const per = single[l].data.length;
      const fromBatch = maps[l].data.subarray(per, 2 * per);
      let diff = 0;
      for (let i = 0; i < per; i++) diff = Math.max(diff, Math.abs(fromBatch[i] - single[l].data[i]));
      expect(diff).toBeLessThan(1e-4);
    }
  });

  it('finds a slightly shifted copy more similar than a different image', async () => {
    const [a, shifted, other] = await Promise.all([texture(7), texture(7, 256, 2), texture(8)].map((t) => ext.extract(t)));
    for (let l = 0; l < a.length; l++) {
      const same = meanCos(a[l], shifted[l], 2);
      const diff = meanCos(a[l], other[l], 2);
      expect(same).toBeGreaterThan(diff + 0.05);
    }
  });
});
