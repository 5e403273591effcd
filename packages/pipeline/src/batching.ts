/**
 * Deterministic batches by step: the images of step `s` depend only on the seed and `s`, so a
 * resumed stage sees exactly the batches an uninterrupted one would.
 */
import { Rng, tensor, sizeOf, type HostTensor } from '@diad/core';

/**
 * Indices of the batch of `step`: positions `step*bs .. step*bs+bs-1` of an endless stream of
 * epochs, each a fresh seeded permutation of `0..n-1`.
 * @throws Error when `n` is 0.
 */
export function batchIndices(step: number, n: number, batchSize: number, seed: number): number[] {
  if (n <= 0) throw new Error('no training images to draw a batch from');
  const out: number[] = [];
  let cachedEpoch = -1;
  let perm: number[] = [];
  for (let k = 0; k < batchSize; k++) {
    const p = step * batchSize + k;
    const epoch = Math.floor(p / n);
    if (epoch !== cachedEpoch) {
      perm = new Rng(seed, 1000 + epoch).shuffle(Array.from({ length: n }, (_, i) => i));
      cachedEpoch = epoch;
    }
    out.push(perm[p % n]);
  }
  return out;
}

/** Gathers items of the batch axis of a float tensor (a copy). */
export function gather(t: HostTensor, idx: readonly number[]): HostTensor {
  const per = sizeOf(t.shape.slice(1));
  const out = new Float32Array(idx.length * per);
  idx.forEach((i, k) => {
    out.set(t.data.subarray(i * per, (i + 1) * per), k * per);
  });
  return tensor(out, [idx.length, ...t.shape.slice(1)], t.layout);
}
