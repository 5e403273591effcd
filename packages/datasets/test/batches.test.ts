import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { batches, openDataset, splitValidation, type Batch, type Dataset, type Sample } from '../src/index.js';
import { mvtecClass, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(tmp.cleanup);
let ds: Dataset;
beforeAll(async () => {
  await mvtecClass(tmp.dir, 'a', 10, 2, { d: 2 }, 4);
  await mvtecClass(tmp.dir, 'b', 5, 1, { e: 1 }, 4);
  ds = await openDataset(tmp.dir);
});

async function collect(samples: readonly Sample[], opts: Parameters<typeof batches>[1]): Promise<string[][]> {
  const out: string[][] = [];
  for await (const b of batches(samples, opts)) out.push(b.samples.map((s) => s.imagePath));
  return out;
}

describe('batches', () => {
  it('yields NCHW images, uint8 masks and labels in dataset order', async () => {
    const test = ds.samples.filter((s) => s.split === 'test');
    const got: Batch[] = [];
    for await (const b of batches(test, { batchSize: 3, size: 6 })) got.push(b);
    expect(got.map((b) => b.images.shape)).toEqual([
      [3, 3, 6, 6],
      [3, 3, 6, 6],
    ]);
    expect(got[0].masks.shape).toEqual([3, 1, 6, 6]);
    expect(got[0].masks.dtype).toBe('uint8');
    expect([...got.flatMap((b) => [...b.labels])]).toEqual(test.map((s) => s.label));
    expect(got[0].rgb[0].width).toBe(6);
    // Good images have empty masks; defective ones the 2x2 square of a 4x4 mask, scaled to 6x6.
    const sum = (b: Batch, i: number) => b.masks.data.slice(i * 36, (i + 1) * 36).reduce((x, y) => x + y, 0);
    expect(sum(got[0], 0)).toBe(0);
    expect(sum(got[0], 2)).toBeGreaterThan(0);
  });

  it('shuffles deterministically by seed, covering every sample once', async () => {
    const a = await collect(ds.samples, { batchSize: 4, size: 4, shuffle: true, seed: 7 });
    const b = await collect(ds.samples, { batchSize: 4, size: 4, shuffle: true, seed: 7 });
    const c = await collect(ds.samples, { batchSize: 4, size: 4, shuffle: true, seed: 8 });
    expect(a).toEqual(b);
    expect(a.flat()).not.toEqual(c.flat());
    expect(a.flat().sort()).toEqual(ds.samples.map((s) => s.imagePath).sort());
    expect(a.flat()).not.toEqual(ds.samples.map((s) => s.imagePath));
    expect(a.map((x) => x.length)).toEqual([4, 4, 4, 4, 4, 1]);
    const dropped = await collect(ds.samples, { batchSize: 4, size: 4, shuffle: true, seed: 7, dropLast: true });
    expect(dropped).toEqual(a.slice(0, 5));
  });

  it('rejects a bad batch size', async () => {
    await expect(collect(ds.samples, { batchSize: 0 })).rejects.toThrow(/batchSize/);
  });
});

describe('splitValidation', () => {
  it('carves validation per class from train only, deterministically by seed', () => {
    const s1 = splitValidation(ds.samples, { fraction: 0.2, seed: 1 });
    const s2 = splitValidation(ds.samples, { fraction: 0.2, seed: 1 });
    expect(s1).toEqual(s2);
    expect(s1.val.filter((s) => s.className === 'a')).toHaveLength(2);
    expect(s1.val.filter((s) => s.className === 'b')).toHaveLength(1);
    expect(s1.val.every((s) => s.split === 'val' && s.label === 0 && s.imagePath.includes(join('train', 'good')))).toBe(true);
    expect(s1.train).toHaveLength(12);
    expect(s1.test).toEqual(ds.samples.filter((s) => s.split === 'test'));
    const trainPaths = new Set(s1.train.map((s) => s.imagePath));
    expect(s1.val.some((s) => trainPaths.has(s.imagePath))).toBe(false);
    const other = splitValidation(ds.samples, { fraction: 0.2, seed: 2 });
    expect(other.val.map((s) => s.imagePath)).not.toEqual(s1.val.map((s) => s.imagePath));
    expect(splitValidation(ds.samples, { fraction: 0 }).val).toEqual([]);
    expect(() => splitValidation(ds.samples, { fraction: 1 })).toThrow(/fraction/);
  });
});
