/**
 * Exact ordering of float32 scores without comparisons: each score's IEEE-754 bits are mapped to
 * an unsigned 32-bit key whose unsigned order equals the float order, then keys (with a 32-bit
 * payload riding along) are sorted by a least-significant-digit radix sort, 3 passes of 11/11/10
 * bits. Linear time, stable, no quantisation: every distinct float stays a distinct key.
 */

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * Sortable key of a float32 value (finite, -0 already turned into +0 by the caller).
 * Negative floats get all bits flipped, non-negative ones get the sign bit set.
 */
export function floatToKey(value: number): number {
  F32[0] = value;
  const u = U32[0];
  return (u & 0x80000000 ? ~u : u | 0x80000000) >>> 0;
}

/** Inverse of {@link floatToKey}: the float32 value (as a JS number) of a key. */
export function keyToFloat(key: number): number {
  U32[0] = key & 0x80000000 ? key & 0x7fffffff : ~key >>> 0;
  return F32[0];
}

const PASSES = [
  [0, 2047],
  [11, 2047],
  [22, 1023],
] as const;

/**
 * Sort `keys` ascending, applying the same permutation to `vals` (stable). `tmpKeys` and
 * `tmpVals` are scratch arrays of at least the same length. The result ends up in `keys`/`vals`
 * (the function copies back when an odd number of passes ran). Passes whose digit is constant
 * over all keys are skipped (scores in [0, 1] usually share their top bits).
 */
export function radixSortPairs(keys: Uint32Array, vals: Uint32Array, tmpKeys: Uint32Array, tmpVals: Uint32Array): void {
  const n = keys.length;
  if (vals.length !== n || tmpKeys.length < n || tmpVals.length < n) {
    throw new Error(`radixSortPairs: keys (${n}), vals (${vals.length}) and scratch (${tmpKeys.length}, ${tmpVals.length}) lengths disagree`);
  }
  const hist = new Uint32Array(2048 * 3);
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    hist[k & 2047]++;
    hist[2048 + ((k >>> 11) & 2047)]++;
    hist[4096 + (k >>> 22)]++;
  }
  let srcK = keys,
    srcV = vals,
    dstK = tmpKeys,
    dstV = tmpVals;
  for (let p = 0; p < 3; p++) {
    const [shift, mask] = PASSES[p];
    const base = p * 2048;
    let skip = false;
    for (let b = 0; b <= mask; b++) {
      const c = hist[base + b];
      if (c === n) skip = true;
      if (c !== 0) break;
    }
    if (skip || n === 0) continue;
    let sum = 0;
    for (let b = 0; b <= mask; b++) {
      const c = hist[base + b];
      hist[base + b] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const k = srcK[i];
      const pos = hist[base + ((k >>> shift) & mask)]++;
      dstK[pos] = k;
      dstV[pos] = srcV[i];
    }
    [srcK, dstK] = [dstK, srcK];
    [srcV, dstV] = [dstV, srcV];
  }
  if (srcK !== keys) {
    keys.set(srcK.subarray(0, n));
    vals.set(srcV.subarray(0, n));
  }
}
