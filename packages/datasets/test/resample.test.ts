import { describe, expect, it } from 'vitest';
import { Rng } from '@diad/core';
import { resizeBilinear, resizeNearest, type Pixels } from '../src/index.js';

const gray = (w: number, h: number, v: number[]): Pixels => ({ data: Uint8Array.from(v), width: w, height: h, channels: 1 });

/**
 * Independent float reference of Pillow's antialiased bilinear resize: a triangle filter of
 * half-width max(scale, 1) centred on each output pixel centre, normalised, per axis.
 */
function reference(src: Pixels, ow: number, oh: number): Float64Array {
  const axis = (n: number, m: number) => {
    const s = n / m;
    const f = Math.max(s, 1);
    return Array.from({ length: m }, (_, o) => {
      const c = (o + 0.5) * s;
      const w = Array.from({ length: n }, (_, i) => Math.max(0, 1 - Math.abs((i + 0.5 - c) / f)));
      const t = w.reduce((a, b) => a + b, 0);
      return w.map((v) => v / t);
    });
  };
  const wx = axis(src.width, ow);
  const wy = axis(src.height, oh);
  const out = new Float64Array(ow * oh * src.channels);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++)
      for (let c = 0; c < src.channels; c++) {
        let acc = 0;
        for (let j = 0; j < src.height; j++) {
          if (!wy[y][j]) continue;
          for (let i = 0; i < src.width; i++) acc += wy[y][j] * wx[x][i] * src.data[(j * src.width + i) * src.channels + c];
        }
        out[(y * ow + x) * src.channels + c] = acc;
      }
  return out;
}

describe('resizeBilinear (Pillow BILINEAR)', () => {
  it('shrinks 4 -> 2 with the widened triangle filter (weights 3/7, 3/7, 1/7)', () => {
    // out0 = (3*0 + 3*70 + 1*140) / 7 = 50; out1 = (1*70 + 3*140 + 3*210) / 7 = 160.
    expect([...resizeBilinear(gray(4, 1, [0, 70, 140, 210]), 2, 1).data]).toEqual([50, 160]);
  });

  it('enlarges 2 -> 4 as half-pixel-centred linear interpolation', () => {
    expect([...resizeBilinear(gray(2, 1, [0, 100]), 4, 1).data]).toEqual([0, 25, 75, 100]);
    expect([...resizeBilinear(gray(1, 2, [0, 100]), 1, 4).data]).toEqual([0, 25, 75, 100]);
  });

  it('rounds to 8 bits after the horizontal pass, as Pillow does', () => {
    // Rows average to 15 and 35.5 -> 36 (rounded half up); then (15 + 36) / 2 = 25.5 -> 26.
    // A single float pass would give 25.25 -> 25.
    expect([...resizeBilinear(gray(2, 2, [10, 20, 30, 41]), 1, 1).data]).toEqual([26]);
  });

  it('keeps channels apart and returns the input for an unchanged size', () => {
    const rgb: Pixels = { data: Uint8Array.from([255, 0, 10, 0, 255, 30]), width: 2, height: 1, channels: 3 };
    expect([...resizeBilinear(rgb, 1, 1).data]).toEqual([128, 128, 20]);
    expect(resizeBilinear(rgb, 2, 1)).toBe(rgb);
  });

  it('is within 1 level of the float reference on random images (shrink, enlarge, mixed)', () => {
    const rng = new Rng(3);
    for (const [w, h, ow, oh] of [
      [37, 23, 16, 9],
      [9, 7, 20, 15],
      [30, 8, 11, 13],
      [64, 64, 21, 21],
    ]) {
      const src: Pixels = { data: Uint8Array.from({ length: w * h * 3 }, () => rng.int(0, 255)), width: w, height: h, channels: 3 };
      const ref = reference(src, ow, oh);
      const out = resizeBilinear(src, ow, oh).data;
      let worst = 0;
      for (let i = 0; i < out.length; i++) worst = Math.max(worst, Math.abs(out[i] - ref[i]));
      expect(worst).toBeLessThanOrEqual(1);
    }
  });

  // Pillow's own accuracy cases (Tests/test_image_resample.py, TestImagingCoreResampleAccuracy):
  // a size x size image of 0x1e with the top-left and bottom-right quadrants 0xe1; the expected
  // output is given by its top-left quadrant q, mirrored (q at the opposite corner, 255 - q at the others).
  const pillowCase = (size: number): Pixels => {
    const v: number[] = [];
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) v.push(x < size / 2 === y < size / 2 ? 0xe1 : 0x1e);
    return gray(size, size, v);
  };
  const pillowSample = (q: number[][], size: number): number[] => {
    const out = new Array<number>(size * size);
    const h = size / 2;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < h; x++) {
        out[y * size + x] = q[y][x];
        out[(size - 1 - y) * size + size - 1 - x] = q[y][x];
        out[(size - 1 - y) * size + x] = 255 - q[y][x];
        out[y * size + size - 1 - x] = 255 - q[y][x];
      }
    return out;
  };

  it("matches Pillow's published BILINEAR results: reduce 8 -> 4 and enlarge 2 -> 4", () => {
    expect([...resizeBilinear(pillowCase(8), 4, 4).data]).toEqual(
      pillowSample(
        [
          [0xe1, 0xc9],
          [0xc9, 0xb7],
        ],
        4,
      ),
    );
    expect([...resizeBilinear(pillowCase(2), 4, 4).data]).toEqual(
      pillowSample(
        [
          [0xe1, 0xb0],
          [0xb0, 0x98],
        ],
        4,
      ),
    );
  });

  it('rejects a non-integer size', () => {
    expect(() => resizeBilinear(gray(2, 1, [0, 1]), 1.5, 1)).toThrow(/invalid target size/);
  });
});

describe('resizeNearest (Pillow NEAREST)', () => {
  it('takes source index floor((i + 0.5) * in / out)', () => {
    expect([...resizeNearest(gray(6, 1, [0, 1, 2, 3, 4, 5]), 4, 1).data]).toEqual([0, 2, 3, 5]);
    expect([...resizeNearest(gray(2, 1, [7, 9]), 4, 1).data]).toEqual([7, 7, 9, 9]);
    expect([...resizeNearest(gray(1, 3, [1, 0, 1]), 1, 2).data]).toEqual([1, 1]);
  });
});
