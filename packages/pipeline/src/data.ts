/**
 * The run's data: the multi-class dataset of the config's roots and classes, capped per class,
 * with the validation split carved from train (never from test), and decoding that reports and
 * skips unreadable images instead of stopping the run.
 */
import { openDataset, splitValidation, loadSample, rgbToTensor, masksToTensor, type Sample, type LoadedSample } from '@diad/datasets';
import { Rng, type HostTensor } from '@diad/core';
import type { RunConfig } from './config.js';

/** An image that could not be used, and why. */
export interface Skipped {
  path: string;
  reason: string;
  /** The split the image belongs to (absent in runs made before splits were recorded). */
  split?: SplitName;
}

/** The splits images are decoded for. */
export type SplitName = 'train' | 'validation' | 'test';

export interface RunSplits {
  classes: readonly string[];
  train: Sample[];
  val: Sample[];
  test: Sample[];
}

/** Keeps at most `cap` samples per class (a seeded choice, dataset order kept). */
export function capPerClass(samples: Sample[], cap: number | null, seed: number): Sample[] {
  if (cap === null) return samples;
  const byClass = new Map<string, number[]>();
  samples.forEach((s, i) => {
    byClass.set(s.className, [...(byClass.get(s.className) ?? []), i]);
  });
  const keep = new Set<number>();
  const rng = new Rng(seed, 7);
  for (const idx of byClass.values()) {
    // Keep good and defective test images in proportion: shuffle within label, interleave.
    const good = rng.shuffle(idx.filter((i) => samples[i].label === 0));
    const bad = rng.shuffle(idx.filter((i) => samples[i].label === 1));
    const nGood = Math.min(good.length, Math.max(bad.length ? 1 : cap, Math.round((cap * good.length) / idx.length)));
    for (const i of [...good.slice(0, nGood), ...bad.slice(0, cap - nGood)]) keep.add(i);
  }
  return samples.filter((_, i) => keep.has(i));
}

/**
 * Opens the config's dataset and splits it: train (capped) minus a per-class validation fraction,
 * validation, test (capped).
 * @throws DatasetError naming the root/file and the fix for structural problems (missing class,
 *   mask without image, ...).
 */
export async function openSplits(cfg: RunConfig): Promise<RunSplits> {
  // fit reads the train split only: a test image without its mask is for `test` (and `inspect`) to refuse.
  const ds = await openDataset(cfg.data.roots, { ...(cfg.data.classes ? { classes: cfg.data.classes } : {}), splits: ['train'] });
  const all = [...ds.samples];
  const train = capPerClass(
    all.filter((s) => s.split === 'train'),
    cfg.data.maxTrainPerClass,
    cfg.seed,
  );
  const test = capPerClass(
    all.filter((s) => s.split === 'test'),
    cfg.data.maxTestPerClass,
    cfg.seed + 1,
  );
  const split = splitValidation([...train, ...test], { fraction: cfg.data.validationFraction, seed: cfg.seed });
  return { classes: ds.classes, train: split.train, val: split.val, test: split.test };
}

/** Decoded samples: images `[N, 3, S, S]` (ImageNet-normalised), masks `[N, 1, S, S]`, and what was skipped. */
export interface Decoded {
  samples: Sample[];
  images: HostTensor;
  masks: HostTensor<'uint8'>;
  skipped: Skipped[];
}

/**
 * Decodes samples at `size`, in parallel groups of 8; an unreadable image (or its mask) is
 * reported in `skipped` (with its split) and left out.
 * @throws Error when no sample at all could be decoded.
 */
export async function decodeSamples(samples: readonly Sample[], size: number, what: SplitName): Promise<Decoded> {
  const ok: LoadedSample[] = [];
  const skipped: Skipped[] = [];
  for (let i = 0; i < samples.length; i += 8) {
    const group = samples.slice(i, i + 8);
    const res = await Promise.allSettled(group.map((s) => loadSample(s, size)));
    for (let k = 0; k < res.length; k++) {
      const r = res[k];
      if (r.status === 'fulfilled') {
        ok.push(r.value);
        continue;
      }
      // libvips keeps one error buffer for all threads, so a decode that fails beside others can
      // report "Unknown error"; decoding it again alone gives the decoder's message (as inspect shows).
      const again = await loadSample(group[k], size).then(
        (v) => ({ v, e: null }),
        (e: Error) => ({ v: null, e }),
      );
      if (again.v) ok.push(again.v);
      else skipped.push({ path: group[k].imagePath, reason: firstLine(again.e!.message), split: what });
    }
  }
  // The reason starts with the file (DatasetError), so the path is not repeated.
  for (const s of skipped) process.stderr.write(`warning: skipping a ${what} image: ${s.reason.startsWith(s.path) ? s.reason : `${s.path}: ${s.reason}`}\n`);
  if (ok.length === 0) throw new Error(`no ${what} image could be decoded (${skipped.length} skipped); check the data folders`);
  return {
    samples: ok.map((l) => l.sample),
    images: rgbToTensor(ok.map((l) => l.image)),
    masks: masksToTensor(ok.map((l) => l.mask)),
    skipped,
  };
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}

/** Stable id of a sample for file names: `<class>_<defect>_<file stem>` with unsafe characters replaced. */
export function sampleId(s: Sample): string {
  const stem = s.imagePath
    .split(/[\\/]/)
    .pop()!
    .replace(/\.[^.]+$/, '');
  return `${s.className}_${s.defect}_${stem}`.replace(/[^A-Za-z0-9._-]+/g, '-');
}
