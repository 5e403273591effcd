import { Rng } from '@diad/core';
import { loadBatch, type Batch, type LoadOptions } from './load.js';
import type { Sample } from './types.js';

/** Options of {@link batches}. */
export interface BatchOptions extends LoadOptions {
  batchSize: number;
  /** Shuffle the order (seeded); default false (dataset order). */
  shuffle?: boolean;
  /** Seed of the shuffle; use e.g. `seed + epoch` for a new order each epoch. Default 0. */
  seed?: number;
  /** Drop a last batch smaller than `batchSize`; default false. */
  dropLast?: boolean;
}

/**
 * Iterates over samples in batches, decoding the next batch while the current one is used.
 * The order is deterministic: dataset order, or a Fisher-Yates shuffle by core's PCG32 `Rng(seed)`.
 * @throws DatasetError (from decoding) naming the file of a bad image or mask.
 */
export async function* batches(samples: readonly Sample[], options: BatchOptions): AsyncGenerator<Batch> {
  const { batchSize } = options;
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new Error(`batches: batchSize must be a positive integer, got ${batchSize}`);
  const order = samples.map((_, i) => i);
  if (options.shuffle) new Rng(options.seed ?? 0).shuffle(order);
  const groups: Sample[][] = [];
  for (let i = 0; i < order.length; i += batchSize) {
    const g = order.slice(i, i + batchSize).map((j) => samples[j]);
    if (g.length < batchSize && options.dropLast) break;
    groups.push(g);
  }
  let next: Promise<Batch> | null = groups.length > 0 ? loadBatch(groups[0], options) : null;
  for (let i = 0; i < groups.length; i++) {
    const current = next!;
    next = i + 1 < groups.length ? loadBatch(groups[i + 1], options) : null;
    // A prefetch the consumer never awaits (it stopped early) must not become an unhandled rejection.
    next?.catch(() => {});
    yield await current;
  }
}

/** Options of {@link splitValidation}. */
export interface ValidationOptions {
  /** Fraction of each class's train images moved to validation, in [0, 1). */
  fraction: number;
  /** Seed of the selection. Default 0. */
  seed?: number;
}

/**
 * Carves a validation set out of the train samples, per class (each class gives
 * `round(fraction * n)` of its n train images, at least one when fraction > 0 and n > 1, never
 * all of them). Test samples are never used for validation. Deterministic by seed; train and
 * validation keep dataset order.
 * @returns train (split `train`), val (same samples with split `val`) and test samples.
 */
export function splitValidation(samples: readonly Sample[], options: ValidationOptions): { train: Sample[]; val: Sample[]; test: Sample[] } {
  const { fraction } = options;
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`splitValidation: fraction must be in [0, 1), got ${fraction}`);
  const rng = new Rng(options.seed ?? 0);
  const byClass = new Map<string, number[]>();
  samples.forEach((s, i) => {
    if (s.split !== 'train') return;
    const list = byClass.get(s.className) ?? [];
    list.push(i);
    byClass.set(s.className, list);
  });
  const toVal = new Set<number>();
  for (const idx of byClass.values()) {
    let k = Math.round(fraction * idx.length);
    if (fraction > 0 && idx.length > 1) k = Math.min(Math.max(k, 1), idx.length - 1);
    for (const i of rng.shuffle([...idx]).slice(0, k)) toVal.add(i);
  }
  const train: Sample[] = [];
  const val: Sample[] = [];
  const test: Sample[] = [];
  samples.forEach((s, i) => {
    if (s.split === 'test') test.push(s);
    else if (toVal.has(i)) val.push({ ...s, split: 'val' });
    else if (s.split === 'train') train.push(s);
    else val.push(s);
  });
  return { train, val, test };
}
