import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concatBatch, tensor, type HostTensor } from '@diad/core';
import { PatchMemoryBank, TfjsFeatureExtractor } from '../src/index.js';
import { texture } from './images.js';

const S = 128;

/** `base` with the square [y0, y0+k) x [x0, x0+k) replaced by `patch`'s pixels. */
function paste(base: HostTensor, patch: HostTensor, y0: number, x0: number, k: number): HostTensor {
  const out = base.data.slice();
  for (let c = 0; c < 3; c++) for (let y = y0; y < y0 + k; y++) for (let x = x0; x < x0 + k; x++) out[(c * S + y) * S + x] = patch.data[(c * S + y) * S + x];
  return tensor(out, base.shape, 'NCHW');
}

describe('PatchMemoryBank', () => {
  let ext: TfjsFeatureExtractor;
  beforeAll(async () => {
    ext = await TfjsFeatureExtractor.load('mobilenet_v2');
  });
  afterAll(() => ext?.dispose());

  it('scores a pasted foreign region above normal images and localises it', async () => {
    const train = [0, 7, 13, 21].map((s) => texture(21, S, s));
    const bank = await PatchMemoryBank.fit(ext, [concatBatch(train.slice(0, 3)), train[3]], 4, { bankSize: 600, seed: 1, sigma: 2 });
    expect(bank.size).toBe(600);
    expect(bank.vectorLength).toBe(32 + 96); // block_5_add + block_10_project_BN channels
    const normal = texture(21, S, 10);
    const bad = paste(normal, texture(99, S), 40, 64, 32);
    const maps = await bank.score(concatBatch([normal, bad]));
    expect(maps.shape).toEqual([2, 1, S, S]);
    const hw = S * S;
    let maxNormal = 0,
      maxBad = 0,
      arg = 0;
    for (let i = 0; i < hw; i++) {
      maxNormal = Math.max(maxNormal, maps.data[i]);
      if (maps.data[hw + i] > maxBad) {
        maxBad = maps.data[hw + i];
        arg = i;
      }
    }
    expect(maxBad).toBeGreaterThan(1.5 * maxNormal);
    const [y, x] = [Math.floor(arg / S), arg % S];
    expect(y).toBeGreaterThanOrEqual(40 - 8);
    expect(y).toBeLessThan(72 + 8);
    expect(x).toBeGreaterThanOrEqual(64 - 8);
    expect(x).toBeLessThan(96 + 8);
    bank.dispose();
  });

  it('is reproducible by seed and rejects a wrong image count or level', async () => {
    const imgs = concatBatch([texture(3, S), texture(4, S)]);
    const a = await PatchMemoryBank.fit(ext, [imgs], 2, { bankSize: 100, seed: 5 });
    const b = await PatchMemoryBank.fit(ext, [imgs], 2, { bankSize: 100, seed: 5 });
    const q = texture(5, S);
    expect([...(await a.score(q)).data]).toEqual([...(await b.score(q)).data]);
    a.dispose();
    b.dispose();
    await expect(PatchMemoryBank.fit(ext, [imgs], 3, { bankSize: 100 })).rejects.toThrow(/expected 3/);
    await expect(PatchMemoryBank.fit(ext, [imgs], 2, { levels: [5] })).rejects.toThrow(/level 5 does not exist/);
    // 'all' is every level, as listing them.
    const all = await PatchMemoryBank.fit(ext, [imgs], 2, { bankSize: 100, seed: 5, levels: 'all', dim: 1024 });
    const listed = await PatchMemoryBank.fit(ext, [imgs], 2, { bankSize: 100, seed: 5, levels: [0, 1, 2], dim: 1024 });
    expect(all.vectorLength).toBe(listed.vectorLength);
    expect([...(await all.score(q)).data]).toEqual([...(await listed.score(q)).data]);
    all.dispose();
    listed.dispose();
  });
});
