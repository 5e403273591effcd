import { promises as fs } from 'node:fs';
import { extname, join } from 'node:path';

/** File extensions read as images (case-insensitive). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'] as const;

/** Whether a file name has an image extension. */
export function isImageFile(name: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase());
}

/** Whether a path exists and is a directory. */
export async function isDir(path: string): Promise<boolean> {
  try {
    return (await fs.stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Whether a path exists and is a file. */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await fs.stat(path)).isFile();
  } catch {
    return false;
  }
}

type Kind = 'dir' | 'file' | 'broken' | 'other';

/**
 * The visible entries of `dir` (hidden ones skipped) with what they are; symbolic links are
 * followed (datasets are often linked into place), a link whose target is missing is `broken`.
 */
async function entries(dir: string): Promise<{ name: string; kind: Kind }[]> {
  const list = (await fs.readdir(dir, { withFileTypes: true })).filter((e) => !e.name.startsWith('.'));
  return Promise.all(
    list.map(async (e) => {
      if (!e.isSymbolicLink()) return { name: e.name, kind: (e.isDirectory() ? 'dir' : e.isFile() ? 'file' : 'other') as Kind };
      const st = await fs.stat(join(dir, e.name)).catch(() => null);
      return { name: e.name, kind: (!st ? 'broken' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other') as Kind };
    }),
  );
}

/** Sorted names of the subdirectories of `dir`, linked ones included (hidden ones skipped). */
export async function listDirs(dir: string): Promise<string[]> {
  return (await entries(dir))
    .filter((e) => e.kind === 'dir')
    .map((e) => e.name)
    .sort();
}

/** Sorted names of the image files directly in `dir`, linked ones included (hidden ones skipped). */
export async function listImages(dir: string): Promise<string[]> {
  return (await entries(dir))
    .filter((e) => e.kind === 'file' && isImageFile(e.name))
    .map((e) => e.name)
    .sort();
}

/** Paths of the symbolic links in `dir` whose target does not exist, sorted. */
export async function brokenLinks(dir: string): Promise<string[]> {
  return (await entries(dir))
    .filter((e) => e.kind === 'broken')
    .map((e) => join(dir, e.name))
    .sort();
}

/** The problem of a broken link found where images or class folders are read. */
export function brokenLinkProblem(path: string, split?: 'train' | 'test'): { file: string; message: string; fix: string; split?: 'train' | 'test' } {
  return {
    file: path,
    message: 'broken symbolic link: its target does not exist',
    fix: 'point the link at an existing file or folder, or remove it',
    ...(split ? { split } : {}),
  };
}

/** File name without its extension. */
export function stem(name: string): string {
  const ext = extname(name);
  return ext ? name.slice(0, -ext.length) : name;
}
