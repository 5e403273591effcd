/**
 * Exact pixel-level rank bins for many anomaly maps without sorting every pixel: only the
 * defective pixels (few) are radix-sorted, with their region; the normal pixels are then counted
 * into the gaps between the distinct defective scores through a lookup table over the float
 * keys. Memory: 16 bytes per defective pixel plus the bins; no per-pixel scratch for the rest.
 */
import type { RankBins } from './bins.js';
import { MetricsInputError } from './errors.js';
import { labelRegions8 } from './regions.js';
import { floatToKey, keyToFloat, radixSortPairs } from './sort.js';

/** One stored test image: its anomaly map, mask and bookkeeping (see MetricsAccumulator.add). */
export interface StoredImage {
  /** Row-major height x width scores, finite, -0 stored as +0. */
  map: Float32Array;
  /** Row-major height x width, nonzero = defective pixel; null when no pixel is defective. */
  mask: Uint8Array | null;
  height: number;
  width: number;
  /** Image label: 1 anomalous, 0 normal. */
  label: 0 | 1;
  defectType: string | null;
  /** Number of defective pixels in `mask`. */
  defectPixels: number;
  /** Smallest and largest score of the map. */
  min: number;
  max: number;
}

/**
 * Build pixel rank bins (with ground-truth region weights) over a set of images.
 * @param thresholds optional ascending float32-valued thresholds (diad AU-PRO) to add as boundaries.
 */
export function pixelBins(images: readonly StoredImage[], thresholds: Float64Array | null): RankBins {
  let P = 0,
    total = 0,
    maxPixels = 0;
  for (const im of images) {
    P += im.defectPixels;
    total += im.map.length;
    if (im.mask) maxPixels = Math.max(maxPixels, im.map.length);
  }
  if (total - P >= 2 ** 32) throw new MetricsInputError(`${total - P} normal pixels in one class; the counters hold at most 2^32 - 1, split the class`);
  // 1. Defective pixels: key + global region id, radix-sorted by key.
  const pk = new Uint32Array(P);
  const pr = new Uint32Array(P);
  const regionWeight: number[] = [];
  const labels = new Int32Array(maxPixels);
  let p = 0;
  for (const im of images) {
    if (!im.mask || im.defectPixels === 0) continue;
    const { count, areas } = labelRegions8(im.mask, im.height, im.width, labels);
    const base = regionWeight.length;
    for (let r = 0; r < count; r++) regionWeight.push(1 / areas[r]);
    const bits = new Uint32Array(im.map.buffer, im.map.byteOffset, im.map.length);
    for (let i = 0; i < im.map.length; i++) {
      const l = labels[i];
      if (l) {
        const u = bits[i];
        pk[p] = (u & 0x80000000 ? ~u : u | 0x80000000) >>> 0;
        pr[p++] = base + l - 1;
      }
    }
  }
  radixSortPairs(pk, pr, new Uint32Array(P), new Uint32Array(P));
  // 2. Boundaries: distinct defective keys merged with the threshold keys.
  const tk = thresholds ? Uint32Array.from(thresholds, (t) => floatToKey(t === 0 ? 0 : t)) : new Uint32Array(0);
  const cap = P + tk.length;
  const B = new Uint32Array(cap);
  const pos = new Float64Array(cap);
  const weight = new Float64Array(cap);
  const thresholdBoundary = thresholds ? new Int32Array(tk.length) : null;
  let m = 0,
    i = 0,
    t = 0;
  while (i < P || t < tk.length) {
    const k = t >= tk.length || (i < P && pk[i] <= tk[t]) ? pk[i] : tk[t];
    if (m === 0 || B[m - 1] !== k) B[m++] = k;
    for (; i < P && pk[i] === k; i++) {
      pos[m - 1]++;
      weight[m - 1] += regionWeight[pr[i]];
    }
    for (; t < tk.length && tk[t] === k; t++) thresholdBoundary![t] = m - 1;
  }
  // 3. Normal pixels counted into the gaps.
  // Uint32 counters halve the randomly accessed memory (a class is limited to 2^32 normal pixels).
  const eq32 = new Uint32Array(m);
  const btw32 = new Uint32Array(m + 1);
  const table = buildTable(B, m);
  for (const im of images) {
    const bits = new Uint32Array(im.map.buffer, im.map.byteOffset, im.map.length);
    countNegatives(bits, im.defectPixels > 0 ? im.mask : null, B, m, table, eq32, btw32);
  }
  const values = new Float64Array(m);
  for (let j = 0; j < m; j++) values[j] = keyToFloat(B[j]);
  return {
    values,
    pos: pos.subarray(0, m),
    weight: weight.subarray(0, m),
    eq: Float64Array.from(eq32),
    btw: Float64Array.from(btw32),
    P,
    N: total - P,
    K: regionWeight.length,
    thresholdBoundary,
  };
}

interface KeyTable {
  lo: number;
  hi: number;
  shift: number;
  /** start[e] = first boundary whose (key - lo) >>> shift >= e. */
  start: Uint32Array;
}

/** A direct-address table over the boundary keys: equal key ranges, about 4 per boundary (cache-sized). */
function buildTable(B: Uint32Array, m: number): KeyTable {
  if (m === 0) return { lo: 0, hi: -1, shift: 0, start: new Uint32Array(2) };
  const lo = B[0],
    hi = B[m - 1];
  const target = Math.min(1 << 22, Math.max(1 << 10, 4 * m));
  let shift = 0;
  while ((hi - lo) / 2 ** shift >= target) shift++;
  const entries = Math.floor((hi - lo) / 2 ** shift) + 2;
  const start = new Uint32Array(entries);
  let j = 0;
  for (let e = 0; e < entries; e++) {
    while (j < m && (B[j] - lo) >>> shift < e) j++;
    start[e] = j;
  }
  return { lo, hi, shift, start };
}

/**
 * Count the normal pixels (mask 0, or all when mask is null) of one map into eq / btw: find the
 * first boundary >= key through the table, then compare.
 */
function countNegatives(bits: Uint32Array, mask: Uint8Array | null, B: Uint32Array, m: number, table: KeyTable, eq: Uint32Array, btw: Uint32Array): void {
  const { lo, hi, shift, start } = table;
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    if (mask !== null && mask[i] !== 0) continue;
    const u = bits[i];
    const k = (u & 0x80000000 ? ~u : u | 0x80000000) >>> 0;
    if (k < lo) {
      btw[0]++;
    } else if (k > hi) {
      btw[m]++;
    } else {
      const e = (k - lo) >>> shift;
      let a = start[e];
      const b = start[e + 1];
      if (a === b) {
        btw[a]++; // no boundary in this bucket: the gap is known
        continue;
      }
      if (b - a > 8) a = lowerBound(B, a, b, k);
      else while (a < b && B[a] < k) a++;
      if (B[a] === k) eq[a]++;
      else btw[a]++;
    }
  }
}

/** First index in [a, b) with B[index] >= k, or b. */
function lowerBound(B: Uint32Array, a: number, b: number, k: number): number {
  while (a < b) {
    const mid = (a + b) >>> 1;
    if (B[mid] < k) a = mid + 1;
    else b = mid;
  }
  return a;
}
