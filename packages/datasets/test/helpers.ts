import { mkdtempSync, rmSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

/** `<repo>/../shared/data`, resolved from this file. */
export const SHARED_DATA = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../shared/data');
export const HAS_SHARED = existsSync(join(SHARED_DATA, 'mvtec_ad', 'bottle')) && existsSync(join(SHARED_DATA, 'mtd', 'magnetic_tile'));
if (!HAS_SHARED) console.warn(`[datasets tests] ${SHARED_DATA} not found: tests on the real data are skipped`);

/** A fresh temp folder, removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'diad-datasets-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a PNG from raw 8-bit pixels (1, 2, 3 or 4 channels). */
export async function png(path: string, width: number, height: number, channels: 1 | 2 | 3 | 4, data: number[] | Uint8Array): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  let img = sharp(Buffer.from(Uint8Array.from(data)), { raw: { width, height, channels: channels as 1 | 2 | 3 | 4 } });
  if (channels <= 2) img = img.toColourspace('b-w');
  writeFileSync(path, await img.png().toBuffer());
}

/** Writes a uniform-colour RGB PNG of `size x size`. */
export async function solid(path: string, size: number, rgb: [number, number, number] = [120, 130, 140]): Promise<void> {
  const data = new Uint8Array(size * size * 3);
  for (let i = 0; i < size * size; i++) data.set(rgb, i * 3);
  await png(path, size, size, 3, data);
}

/** Writes a `size x size` mask PNG (0/255) with a filled square from (x0, y0) of side `s`. */
export async function squareMask(path: string, size: number, x0 = 1, y0 = 1, s = 2): Promise<void> {
  const data = new Uint8Array(size * size);
  for (let y = y0; y < y0 + s; y++) for (let x = x0; x < x0 + s; x++) data[y * size + x] = 255;
  await png(path, size, size, 1, data);
}

/**
 * Makes an MVTec-layout class: `train` good images, `good` test good images, and for each
 * defect type `n` images with masks.
 */
export async function mvtecClass(root: string, name: string, train: number, good: number, defects: Record<string, number>, size = 8): Promise<void> {
  const id = (i: number) => String(i).padStart(3, '0');
  for (let i = 0; i < train; i++) await solid(join(root, name, 'train', 'good', `${id(i)}.png`), size);
  for (let i = 0; i < good; i++) await solid(join(root, name, 'test', 'good', `${id(i)}.png`), size);
  for (const [d, n] of Object.entries(defects)) {
    for (let i = 0; i < n; i++) {
      await solid(join(root, name, 'test', d, `${id(i)}.png`), size, [200, 10, 10]);
      await squareMask(join(root, name, 'ground_truth', d, `${id(i)}_mask.png`), size);
    }
  }
}
