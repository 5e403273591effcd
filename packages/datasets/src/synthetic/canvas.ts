import type { Rng } from '@diad/core';

/** A float RGB canvas, interleaved rows, values nominally in [0, 1]. */
export interface Canvas {
  readonly size: number;
  readonly rgb: Float32Array;
}

export type Rgb = readonly [number, number, number];

export function newCanvas(size: number): Canvas {
  return { size, rgb: new Float32Array(size * size * 3) };
}

/**
 * Smooth value noise in [0, 1] of `size x width` (height x width, row-major): a random lattice with
 * `cells` cells per side, interpolated with a smoothstep (one octave).
 */
export function valueNoise(rng: Rng, size: number, cells: number, width = size): Float32Array {
  const n = cells + 1;
  const lattice = new Float32Array(n * n);
  for (let i = 0; i < lattice.length; i++) lattice[i] = rng.uniform();
  const out = new Float32Array(size * width);
  for (let y = 0; y < size; y++) {
    const fy = (y / size) * cells;
    const y0 = Math.floor(fy);
    const ty = smooth(fy - y0);
    for (let x = 0; x < width; x++) {
      const fx = (x / width) * cells;
      const x0 = Math.floor(fx);
      const tx = smooth(fx - x0);
      const a = lattice[y0 * n + x0];
      const b = lattice[y0 * n + x0 + 1];
      const c = lattice[(y0 + 1) * n + x0];
      const d = lattice[(y0 + 1) * n + x0 + 1];
      out[y * width + x] = (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty;
    }
  }
  return out;
}

function smooth(t: number): number {
  return t * t * (3 - 2 * t);
}

/** Sets pixel `i` (row-major index) to a colour. */
export function setPixel(c: Canvas, i: number, col: Rgb): void {
  c.rgb[i * 3] = col[0];
  c.rgb[i * 3 + 1] = col[1];
  c.rgb[i * 3 + 2] = col[2];
}

/** Blends pixel `i` towards a colour by `alpha` (1 = replace). */
export function blendPixel(c: Canvas, i: number, col: Rgb, alpha: number): void {
  for (let k = 0; k < 3; k++) c.rgb[i * 3 + k] += (col[k] - c.rgb[i * 3 + k]) * alpha;
}

/** Quantises to 8-bit RGB (rounded, clamped). */
export function toBytes(c: Canvas): Uint8Array {
  const out = new Uint8Array(c.rgb.length);
  for (let i = 0; i < out.length; i++) {
    const v = Math.round(c.rgb[i] * 255);
    out[i] = v < 0 ? 0 : Math.min(v, 255);
  }
  return out;
}

/** Uniform in [lo, hi). */
export function between(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.uniform();
}

/**
 * Per-pixel white noise in [0, 1) from an integer hash of (salt, index): as deterministic as the
 * seeded Rng but far cheaper than one PCG32 draw per pixel.
 */
export function pixelNoise(rng: Rng): (i: number) => number {
  const salt = rng.nextU32();
  return (i) => {
    let h = Math.imul(i ^ salt, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
  };
}
