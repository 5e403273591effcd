import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { Rng, writeFileAtomic } from '@diad/core';
import { DatasetError } from '../errors.js';
import { writePng } from '../image.js';
import { toBytes } from './canvas.js';
import { renderDisc, renderGrain, renderWoven, type Rendered } from './classes.js';
import { hole, missingPart, missingThread, scratch, spot, type DefectPainter } from './defects.js';

/** The synthetic classes and their defect types. */
export const SYNTHETIC_CLASSES = {
  /** Plain-weave fabric (texture). */
  woven: { render: renderWoven, defects: { hole, missing_thread: missingThread, spot } },
  /** Grainy cast surface (texture). */
  grain: { render: renderGrain, defects: { scratch, spot, hole } },
  /** Round object on a dark background. */
  disc: { render: renderDisc, defects: { scratch, hole, missing_part: missingPart } },
} satisfies Record<string, { render: (rng: Rng, size: number) => Rendered; defects: Record<string, DefectPainter> }>;

export type SyntheticClass = keyof typeof SYNTHETIC_CLASSES;

/** Options of {@link generateSynthetic}; the defaults make the small embedded demo set. */
export interface SyntheticOptions {
  /** Seed; equal options give byte-identical files. Default 0. */
  seed?: number;
  /** Image side in pixels. Default 256. */
  size?: number;
  /** Classes to make. Default all three: woven, grain, disc. */
  classes?: readonly SyntheticClass[];
  /** Train (good) images per class. Default 24. */
  train?: number;
  /** Good test images per class. Default 6. */
  testGood?: number;
  /** Defective test images per defect type. Default 3. */
  testDefective?: number;
}

/** Manifest file written last into the output folder; it marks a complete synthetic set. */
export const SYNTHETIC_MANIFEST = 'synthetic.json';

const MANIFEST_VERSION = 1;

function withDefaults(o: SyntheticOptions): Required<SyntheticOptions> {
  return {
    seed: o.seed ?? 0,
    size: o.size ?? 256,
    classes: o.classes ?? (Object.keys(SYNTHETIC_CLASSES) as SyntheticClass[]),
    train: o.train ?? 24,
    testGood: o.testGood ?? 6,
    testDefective: o.testDefective ?? 3,
  };
}

/**
 * Generates a multi-class anomaly dataset of procedural textures and objects with exact defect
 * masks, in the MVTec AD layout (`<class>/train/good/000.png`, `<class>/test/<defect>/000.png`,
 * `<class>/ground_truth/<defect>/000_mask.png` with values 0/255), deterministic by seed.
 * Each image gets its own PCG32 stream, so one image does not depend on how many came before.
 * Writes `synthetic.json` (the options) last. The folder must be empty, absent, or a synthetic
 * set made earlier (whose class folders are then replaced).
 * @returns the output folder (absolute) and the number of files written.
 * @throws DatasetError when the folder holds anything else, or on invalid options.
 */
export async function generateSynthetic(outDir: string, options: SyntheticOptions = {}): Promise<{ root: string; files: number }> {
  const o = withDefaults(options);
  const root = resolve(outDir);
  for (const [k, v] of Object.entries({ size: o.size, train: o.train, testGood: o.testGood, testDefective: o.testDefective })) {
    if (!Number.isInteger(v) || v < (k === 'size' ? 16 : 0))
      throw new Error(`generateSynthetic: ${k} must be an integer >= ${k === 'size' ? 16 : 0}, got ${v}`);
  }
  for (const c of o.classes)
    if (!(c in SYNTHETIC_CLASSES)) throw new Error(`generateSynthetic: unknown class ${c}; choose among ${Object.keys(SYNTHETIC_CLASSES).join(', ')}`);
  await clearPrevious(root);
  let stream = 1;
  let files = 0;
  const pending: Promise<void>[] = [];
  const write = async (path: string, img: Uint8Array, channels: 1 | 3, binary = false): Promise<void> => {
    pending.push(writePng(path, { data: img, width: o.size, height: o.size, channels }, { binary }));
    files++;
    // Bound the number of PNGs encoded at once.
    if (pending.length >= 8) await Promise.all(pending.splice(0));
  };
  for (const name of o.classes) {
    const spec = SYNTHETIC_CLASSES[name];
    const dir = join(root, name);
    for (let i = 0; i < o.train; i++) {
      await write(join(dir, 'train', 'good', `${id(i)}.png`), toBytes(spec.render(new Rng(o.seed, stream++), o.size).canvas), 3);
    }
    for (let i = 0; i < o.testGood; i++) {
      await write(join(dir, 'test', 'good', `${id(i)}.png`), toBytes(spec.render(new Rng(o.seed, stream++), o.size).canvas), 3);
    }
    for (const [defect, paint] of Object.entries(spec.defects) as [string, DefectPainter][]) {
      for (let i = 0; i < o.testDefective; i++) {
        const rng = new Rng(o.seed, stream++);
        const img = spec.render(rng, o.size);
        const mask = paint(rng, img);
        await write(join(dir, 'test', defect, `${id(i)}.png`), toBytes(img.canvas), 3);
        await write(join(dir, 'ground_truth', defect, `${id(i)}_mask.png`), mask, 1, true);
      }
    }
  }
  await Promise.all(pending);
  await writeFileAtomic(join(root, SYNTHETIC_MANIFEST), JSON.stringify({ version: MANIFEST_VERSION, ...o }, null, 2) + '\n');
  return { root, files };
}

/**
 * Returns the synthetic set in `outDir`, generating it only when the folder lacks one made with
 * the same options (cheap to call before every demo run).
 */
export async function ensureSynthetic(outDir: string, options: SyntheticOptions = {}): Promise<{ root: string; generated: boolean }> {
  const root = resolve(outDir);
  const want = JSON.stringify({ version: MANIFEST_VERSION, ...withDefaults(options) }, null, 2) + '\n';
  const have = await fs.readFile(join(root, SYNTHETIC_MANIFEST), 'utf8').catch(() => null);
  if (have === want) return { root, generated: false };
  await generateSynthetic(root, options);
  return { root, generated: true };
}

async function clearPrevious(root: string): Promise<void> {
  const entries = await fs.readdir(root).catch(() => [] as string[]);
  if (entries.length === 0) return;
  const manifestPath = join(root, SYNTHETIC_MANIFEST);
  const manifest = await fs
    .readFile(manifestPath, 'utf8')
    .then((t) => JSON.parse(t) as { classes?: string[] })
    .catch(() => null);
  if (!manifest || !Array.isArray(manifest.classes)) {
    throw DatasetError.of(root, 'folder is not empty and holds no synthetic set', 'choose an empty or new folder for the synthetic dataset');
  }
  await fs.rm(manifestPath, { force: true });
  for (const c of manifest.classes) if (c in SYNTHETIC_CLASSES) await fs.rm(join(root, c), { recursive: true, force: true });
}

function id(i: number): string {
  return String(i).padStart(3, '0');
}
