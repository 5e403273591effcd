import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from '../src/index.js';
import { HAS_SHARED, SHARED_DATA, mvtecClass, png, squareMask, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(tmp.cleanup);

describe('inspect', () => {
  it('counts per class and lists decode problems: truncated image, mask size, empty mask', async () => {
    const root = join(tmp.dir, 'r');
    await mvtecClass(root, 'c', 2, 1, { crack: 3 });
    const cut = join(root, 'c', 'train', 'good', '001.png');
    const noisy = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 7919) % 251);
    await png(cut, 8, 8, 3, noisy);
    writeFileSync(cut, readFileSync(cut).subarray(0, 60));
    await squareMask(join(root, 'c', 'ground_truth', 'crack', '001_mask.png'), 6);
    await png(join(root, 'c', 'ground_truth', 'crack', '002_mask.png'), 8, 8, 1, new Uint8Array(64));
    const quick = await inspect(root, { verify: false });
    expect(quick.problemCount).toBe(0);
    const r = await inspect(root);
    expect(r.classes).toHaveLength(1);
    const c = r.classes[0];
    expect([c.name, c.format, c.train, c.testGood, c.testDefective, c.masks, c.defects]).toEqual(['c', 'mvtec', 2, 1, 3, 3, { crack: 3 }]);
    const byFile = Object.fromEntries(c.problems.map((p) => [p.file, p.message]));
    expect(Object.keys(byFile).sort()).toEqual(
      [join(root, 'c', 'ground_truth', 'crack', '001_mask.png'), join(root, 'c', 'ground_truth', 'crack', '002_mask.png'), cut].sort(),
    );
    expect(byFile[cut]).toMatch(/^unreadable image/);
    expect(byFile[join(root, 'c', 'ground_truth', 'crack', '001_mask.png')]).toContain('mask is 6x6 but its image');
    expect(byFile[join(root, 'c', 'ground_truth', 'crack', '002_mask.png')]).toBe('mask of a defective image is all zero');
    expect(r.problemCount).toBe(3);
  });

  it.skipIf(!HAS_SHARED)('reports the shared MVTec AD and MTD classes with the documented counts', async () => {
    const r = await inspect([join(SHARED_DATA, 'mvtec_ad'), join(SHARED_DATA, 'mtd')]);
    expect(r.classes.map((c) => [c.name, c.train, c.testGood, c.testDefective, c.masks])).toEqual([
      ['bottle', 200, 20, 63, 63],
      ['grid', 25, 3, 11, 11],
      ['magnetic_tile', 200, 191, 388, 388],
    ]);
    expect(r.classes[2].defects).toEqual({ blowhole: 115, break: 85, crack: 57, fray: 32, uneven: 99 });
    expect(r.problemCount).toBe(0);
  });
});
