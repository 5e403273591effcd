import { basename, join, resolve } from 'node:path';
import { DatasetError } from './errors.js';
import { isDir, listImages } from './files.js';
import type { ClassScan } from './scan.js';
import type { Dataset, Label, Split } from './types.js';

/** Options of {@link loadImageFolder}. */
export interface FolderOptions {
  /** Class name of the images (default: the folder name). */
  className?: string;
  /** Label of every image (default 0, good). */
  label?: Label;
  /** Split of every image (default `test`: a plain folder is usually something to score). */
  split?: Split;
}

/**
 * A plain folder of images (no masks) as a one-class dataset, e.g. images to score with
 * `diad predict`. Only the files directly in `dir` with an image extension are taken, sorted.
 * @throws DatasetError when the folder does not exist or holds no image.
 */
export async function loadImageFolder(dir: string, options: FolderOptions = {}): Promise<Dataset> {
  const scan = await scanImageFolder(dir, options);
  return { classes: [scan.name], samples: scan.samples };
}

/** Scan behind {@link loadImageFolder}. */
export async function scanImageFolder(dir: string, options: FolderOptions = {}): Promise<ClassScan> {
  const root = resolve(dir);
  if (!(await isDir(root))) throw DatasetError.of(root, 'image folder does not exist', 'pass an existing folder of images');
  const files = await listImages(root);
  if (files.length === 0) {
    throw DatasetError.of(root, 'no images in folder', 'put .png/.jpg images directly in it (subfolders are not searched)');
  }
  const name = options.className ?? basename(root);
  const label = options.label ?? 0;
  const samples = files.map((f) => ({
    className: name,
    split: options.split ?? 'test',
    label,
    defect: label ? 'anomaly' : 'good',
    imagePath: join(root, f),
    maskPath: null,
    format: 'folder' as const,
    root,
  }));
  return { name, root, format: 'folder', samples, masks: 0, problems: [] };
}
