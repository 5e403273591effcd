import { basename, join, resolve } from 'node:path';
import { DatasetError } from './errors.js';
import { brokenLinkProblem, brokenLinks, isDir, isFile, listDirs } from './files.js';
import { isMvtecClassDir, scanMvtecClass } from './mvtec.js';
import type { ClassScan } from './scan.js';
import type { Dataset, Sample } from './types.js';
import { isVisaRoot, scanVisa } from './visa.js';

/** Options of {@link openDataset} and {@link scanRoots}. */
export interface OpenOptions {
  /** Keep only these classes (unprefixed or prefixed names); all classes when absent. */
  classes?: readonly string[];
  /**
   * Name classes `<root folder name>/<class>` so equal class names from two roots stay apart.
   * Without it, one class name in two roots is an error.
   */
  prefixClasses?: boolean;
  /**
   * The splits that will be used: problems that concern only another split (a test image without
   * its mask, an orphan mask) are not raised (`fit` reads the train split only; `inspect` lists all).
   * Default: every split.
   */
  splits?: readonly ('train' | 'test')[];
}

/**
 * Finds the classes of one or more dataset roots and scans them (no image is decoded).
 * A root is one of: a VisA root (`split_csv/1cls.csv`), a folder of MVTec-layout class folders
 * (e.g. `mvtec_ad/` holding `bottle/`, `grid/`), or a single MVTec class folder (holding
 * `train/` and `test/`; the class is named after the folder). Structural problems of a class
 * are returned in its scan; see {@link openDataset} for the strict variant.
 * @throws DatasetError for a missing root, a root without classes, a requested class found in
 *   no root, or one class name in two roots (unless `prefixClasses`).
 */
export async function scanRoots(roots: string | readonly string[], options: OpenOptions = {}): Promise<ClassScan[]> {
  const list = (typeof roots === 'string' ? [roots] : roots).map((r) => resolve(r));
  if (list.length === 0) throw DatasetError.of('(no root)', 'no dataset root given', 'pass at least one dataset folder');
  const wanted = options.classes && options.classes.length > 0 ? new Set(options.classes) : null;
  const keep = (raw: string, named: string): boolean => !wanted || wanted.has(raw) || wanted.has(named);
  const scans: ClassScan[] = [];
  const available: string[] = [];
  for (const root of list) {
    if (!(await isDir(root))) {
      const what = (await isFile(root)) ? 'dataset root is a file, not a folder' : 'dataset root does not exist';
      throw DatasetError.of(root, what, 'pass a folder holding class folders (<class>/train/good, <class>/test/<defect>) or a VisA root');
    }
    const prefix = options.prefixClasses ? `${basename(root)}/` : '';
    if (await isVisaRoot(root)) {
      for (const s of await scanVisa(root, prefix)) {
        available.push(s.name);
        if (keep(s.name.slice(prefix.length), s.name)) scans.push(s);
      }
      continue;
    }
    if (await isMvtecClassDir(root)) {
      const raw = basename(root);
      available.push(prefix + raw);
      if (keep(raw, prefix + raw)) scans.push(await scanMvtecClass(root, prefix + raw, root));
      continue;
    }
    const classes: string[] = [];
    for (const d of await listDirs(root)) if (await isMvtecClassDir(join(root, d))) classes.push(d);
    const broken = await brokenLinks(root);
    if (broken.length > 0) {
      throw new DatasetError(broken.map((b) => brokenLinkProblem(b)));
    }
    if (classes.length === 0) {
      throw DatasetError.of(
        root,
        'no class folders found',
        'pass a folder holding <class>/train/good and <class>/test/<defect> (MVTec AD layout), a class folder itself, or a VisA root with split_csv/1cls.csv',
      );
    }
    for (const c of classes) {
      available.push(prefix + c);
      if (keep(c, prefix + c)) scans.push(await scanMvtecClass(join(root, c), prefix + c, root));
    }
  }
  if (wanted) {
    const found = new Set(scans.flatMap((s) => [s.name, s.name.slice(s.name.lastIndexOf('/') + 1)]));
    const missing = [...wanted].filter((c) => !found.has(c));
    if (missing.length > 0) {
      throw DatasetError.of(list.join(', '), `class ${missing.join(', ')} not found`, `choose among: ${available.join(', ')}`);
    }
  }
  const seen = new Map<string, string>();
  for (const s of scans) {
    const other = seen.get(s.name);
    if (other !== undefined) {
      throw DatasetError.of(
        s.root,
        `class ${s.name} is also in ${other}`,
        'pass only one of the two roots, filter classes, or prefix class names with the root folder name (prefixClasses, CLI --prefix-classes)',
      );
    }
    seen.set(s.name, s.root);
  }
  return scans;
}

/**
 * Opens one or more dataset roots as one multi-class dataset (class names kept, or prefixed, see
 * {@link OpenOptions}). Samples are ordered by class (roots in the order given, classes sorted),
 * then train before test, then defect and file name.
 * @throws DatasetError listing every structural problem (missing class, defective image without
 *   mask, orphan mask, ...) with the file and the fix. Problems that need decoding (unreadable or
 *   truncated image, mask size differing from its image) surface when a sample is loaded, or
 *   all at once with `inspect(..., { verify: true })`.
 */
export async function openDataset(roots: string | readonly string[], options: OpenOptions = {}): Promise<Dataset> {
  const scans = await scanRoots(roots, options);
  const problems = scans.flatMap((s) => s.problems).filter((p) => !p.split || !options.splits || options.splits.includes(p.split));
  if (problems.length > 0) throw new DatasetError(problems);
  return datasetOf(scans);
}

/** The dataset formed by some class scans (problems ignored). */
export function datasetOf(scans: readonly ClassScan[]): Dataset {
  const samples: Sample[] = [];
  for (const s of scans) samples.push(...[...s.samples].sort(compareSamples));
  return { classes: scans.map((s) => s.name), samples };
}

const SPLIT_ORDER = { train: 0, val: 1, test: 2 } as const;

function compareSamples(a: Sample, b: Sample): number {
  return (
    SPLIT_ORDER[a.split] - SPLIT_ORDER[b.split] ||
    Number(a.defect !== 'good') - Number(b.defect !== 'good') ||
    cmp(a.defect, b.defect) ||
    cmp(a.imagePath, b.imagePath)
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
