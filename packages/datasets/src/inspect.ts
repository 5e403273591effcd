import { DatasetError } from './errors.js';
import { readMask, readRgb } from './image.js';
import { scanRoots, type OpenOptions } from './open.js';
import type { ClassScan } from './scan.js';
import type { Problem, Sample, SourceFormat } from './types.js';

/** Counts and problems of one class. */
export interface ClassReport {
  readonly name: string;
  readonly root: string;
  readonly format: SourceFormat;
  /** Train images (all good). */
  readonly train: number;
  readonly testGood: number;
  readonly testDefective: number;
  /** Defective test images per defect type. */
  readonly defects: Readonly<Record<string, number>>;
  /** Mask files matched to a defective test image. */
  readonly masks: number;
  readonly problems: readonly Problem[];
}

/** What {@link inspect} found. */
export interface InspectReport {
  readonly classes: readonly ClassReport[];
  /** Total number of problems over all classes. */
  readonly problemCount: number;
}

/** Options of {@link inspect}. */
export interface InspectOptions extends OpenOptions {
  /**
   * Also decode every image and mask (default true): finds unreadable or truncated files, masks
   * whose size differs from their image, and all-zero masks of defective images.
   */
  verify?: boolean;
  /** Files decoded at once while verifying (default 4). */
  concurrency?: number;
  /** Called after each verified sample with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Counts, per class, train images, good and defective test images (per defect type) and masks,
 * and lists the problems found, with the file and the fix.
 * @throws DatasetError only for problems that leave nothing to count: a missing root, a root
 *   without classes, an unknown class, a class name in two roots.
 */
export async function inspect(roots: string | readonly string[], options: InspectOptions = {}): Promise<InspectReport> {
  const scans = await scanRoots(roots, options);
  if (options.verify ?? true) await verify(scans, options);
  const classes = scans.map(report);
  return { classes, problemCount: classes.reduce((n, c) => n + c.problems.length, 0) };
}

function report(s: ClassScan): ClassReport {
  const defects: Record<string, number> = {};
  let train = 0;
  let testGood = 0;
  let testDefective = 0;
  for (const x of s.samples) {
    if (x.split !== 'test') train++;
    else if (x.label === 0) testGood++;
    else {
      testDefective++;
      defects[x.defect] = (defects[x.defect] ?? 0) + 1;
    }
  }
  return { name: s.name, root: s.root, format: s.format, train, testGood, testDefective, defects, masks: s.masks, problems: s.problems };
}

async function verify(scans: ClassScan[], options: InspectOptions): Promise<void> {
  const jobs: { scan: ClassScan; sample: Sample }[] = scans.flatMap((scan) => scan.samples.map((sample) => ({ scan, sample })));
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const { scan, sample } = jobs[next++];
      scan.problems.push(...(await check(sample)));
      options.onProgress?.(++done, jobs.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, worker));
}

async function check(sample: Sample): Promise<Problem[]> {
  const problems: Problem[] = [];
  const catching = async <T>(p: Promise<T>): Promise<T | null> => {
    try {
      return await p;
    } catch (e) {
      if (!(e instanceof DatasetError)) throw e;
      problems.push(...e.problems);
      return null;
    }
  };
  const image = await catching(readRgb(sample.imagePath));
  if (!sample.maskPath || sample.label !== 1) return problems;
  const mask = await catching(readMask(sample.maskPath));
  if (!mask) return problems;
  if (image && (mask.width !== image.width || mask.height !== image.height)) {
    problems.push({
      file: sample.maskPath,
      message: `mask is ${mask.width}x${mask.height} but its image ${sample.imagePath} is ${image.width}x${image.height}`,
      fix: 'resize the mask to its image size (nearest neighbour) or pair it with the right image',
    });
  }
  if (!mask.data.includes(1)) {
    problems.push({
      file: sample.maskPath,
      message: 'mask of a defective image is all zero',
      fix: 'draw the defect region in the mask, or move the image to test/good',
    });
  }
  return problems;
}
