import { describe, it, expect } from 'vitest';
import { tensor, toLayout, concatBatch, sliceBatch, sizeOf, maxAbsDiff, mask, Rng } from '../src/index.js';

describe('host tensor', () => {
  it('checks the data length against the shape', () => {
    expect(() => tensor(new Float32Array(5), [2, 3])).toThrow(/needs 6 elements, got 5/);
    expect(() => mask(new Uint8Array(4), [1, 1, 2, 2])).not.toThrow();
    expect(sizeOf([])).toBe(1);
    expect(() => sizeOf([2, -1])).toThrow(/invalid dimension/);
  });

  it('permutes NCHW <-> NHWC exactly', () => {
    // [1, 2, 2, 3]: channel 0 = 0..5, channel 1 = 10..15
    const x = tensor(Float32Array.from([0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]), [1, 2, 2, 3], 'NCHW');
    const y = toLayout(x, 'NHWC');
    expect(y.shape).toEqual([1, 2, 3, 2]);
    expect([...y.data]).toEqual([0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15]);
    const back = toLayout(y, 'NCHW');
    expect([...back.data]).toEqual([...x.data]);
    expect(back.shape).toEqual([1, 2, 2, 3]);
  });

  it('concatenates and slices along the batch axis', () => {
    const a = tensor(Float32Array.from([1, 2]), [1, 2]);
    const b = tensor(Float32Array.from([3, 4, 5, 6]), [2, 2]);
    const c = concatBatch([a, b]);
    expect(c.shape).toEqual([3, 2]);
    expect([...sliceBatch(c, 1, 3).data]).toEqual([3, 4, 5, 6]);
    expect(() => concatBatch([a, tensor(new Float32Array(3), [1, 3])])).toThrow(/does not match/);
    expect(maxAbsDiff(a, tensor(Float32Array.from([1, 2.5]), [1, 2]))).toBe(0.5);
  });
});

describe('Rng', () => {
  it('is reproducible by seed and differs across seeds', () => {
    const a = new Rng(42).normals(1000);
    const b = new Rng(42).normals(1000);
    const c = new Rng(43).normals(1000);
    expect([...a]).toEqual([...b]);
    expect(a.some((v, i) => v !== c[i])).toBe(true);
  });

  it('gives standard normals and uniform integers', () => {
    const r = new Rng(7);
    const n = 200_000;
    let s = 0,
      s2 = 0;
    for (let i = 0; i < n; i++) {
      const v = r.normal();
      s += v;
      s2 += v * v;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.01);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.02);
    const counts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) counts[r.int(0, 2)]++;
    for (const k of counts) expect(Math.abs(k - 10_000)).toBeLessThan(400);
    const perm = r.shuffle([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...perm].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});
