import { describe, expect, it } from 'vitest';
import { combineLevelMaps, cosineDistance, gaussianBlur, gaussianKernel1d, resizeBilinearAlignCorners, tensor } from '../src/index.js';

describe('cosineDistance', () => {
  it('is 0 for parallel, 1 for orthogonal, 2 for opposite vectors', () => {
    // [1, 2, 1, 3]: three positions with 2 channels.
    const a = tensor(new Float32Array([1, 1, 1, /* ch1 */ 0, 0, 0]), [1, 2, 1, 3], 'NCHW');
    const b = tensor(new Float32Array([2, 0, -3, /* ch1 */ 0, 5, 0]), [1, 2, 1, 3], 'NCHW');
    expect([...cosineDistance(a, b).data]).toEqual([0, 1, 2]);
  });
  it('rejects mismatched shapes', () => {
    expect(() => cosineDistance(tensor(new Float32Array(4), [1, 1, 2, 2]), tensor(new Float32Array(2), [1, 2, 1, 1]))).toThrow(/one shape/);
  });
});

describe('resizeBilinearAlignCorners', () => {
  it('keeps the corners and interpolates linearly between them', () => {
    const x = tensor(new Float32Array([0, 1, 2, 3]), [1, 1, 2, 2], 'NCHW');
    const y = resizeBilinearAlignCorners(x, [3, 3]);
    expect([...y.data]).toEqual([0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3]);
  });
});

describe('gaussian blur (scipy defaults)', () => {
  it('has radius int(4 sigma + 0.5) and sums to 1', () => {
    const k = gaussianKernel1d(1.2); // int(4.8 + 0.5) = 5
    expect(k.length).toBe(2 * 5 + 1);
    expect(k.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 12);
  });
  it('reflects half-sample symmetrically at the border', () => {
    // A 1x3 row [1, 0, 0] blurred with sigma 0.3 (radius 1): only the horizontal pass matters for
    // a single row (the vertical pass reflects a row onto itself).
    const k = gaussianKernel1d(0.3);
    const [w0, w1] = [k[1], k[0]];
    const y = gaussianBlur(tensor(new Float32Array([1, 0, 0]), [1, 1, 1, 3], 'NCHW'), 0.3);
    // index -1 reflects to 0 (value 1); index 3 reflects to 2 (value 0).
    expect(y.data[0]).toBeCloseTo(w0 * 1 + w1 * 1, 6);
    expect(y.data[1]).toBeCloseTo(w1 * 1, 6);
    expect(y.data[2]).toBeCloseTo(0, 6);
  });
  it('keeps a constant image constant and preserves the sum of a centred impulse', () => {
    const c = gaussianBlur(tensor(new Float32Array(20 * 20).fill(3), [1, 1, 20, 20], 'NCHW'), 4);
    for (const v of c.data) expect(v).toBeCloseTo(3, 5);
    const imp = new Float32Array(41 * 41);
    imp[20 * 41 + 20] = 1;
    const b = gaussianBlur(tensor(imp, [1, 1, 41, 41], 'NCHW'), 2);
    expect(b.data.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
    expect(b.data[20 * 41 + 20]).toBeCloseTo(1 / (2 * Math.PI * 4), 3);
  });
});

describe('combineLevelMaps', () => {
  it('adds or multiplies the upsampled levels', () => {
    const l1 = tensor(new Float32Array([2, 2, 2, 2]), [1, 1, 2, 2], 'NCHW');
    const l2 = tensor(new Float32Array([3]), [1, 1, 1, 1], 'NCHW');
    const add = combineLevelMaps([l1, l2], { size: [4, 4], sigma: 0 });
    const mul = combineLevelMaps([l1, l2], { size: [4, 4], sigma: 0, mode: 'mul' });
    expect(add.shape).toEqual([1, 1, 4, 4]);
    for (const v of add.data) expect(v).toBe(5);
    for (const v of mul.data) expect(v).toBe(6);
  });
});
