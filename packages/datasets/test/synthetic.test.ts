import { afterAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '@diad/core';
import { DatasetError, ensureSynthetic, generateSynthetic, inspect, openDataset, readMask, readRgb, SYNTHETIC_CLASSES } from '../src/index.js';
import { toBytes } from '../src/synthetic/canvas.js';
import type { DefectPainter } from '../src/synthetic/defects.js';
import { tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(tmp.cleanup);
const small = { size: 48, train: 3, testGood: 2, testDefective: 2 };

function listAll(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

describe('synthetic dataset', () => {
  it('writes the MVTec layout with three classes, their defects and masks, without problems', async () => {
    const out = join(tmp.dir, 's1');
    const { files } = await generateSynthetic(out, { ...small, seed: 5 });
    expect(files).toBe(3 * (3 + 2 + 3 * 2 * 2));
    const report = await inspect(out);
    expect(report.problemCount).toBe(0);
    expect(report.classes.map((c) => [c.name, c.train, c.testGood, c.testDefective, c.masks, c.defects])).toEqual([
      ['disc', 3, 2, 6, 6, { hole: 2, missing_part: 2, scratch: 2 }],
      ['grain', 3, 2, 6, 6, { hole: 2, scratch: 2, spot: 2 }],
      ['woven', 3, 2, 6, 6, { hole: 2, missing_thread: 2, spot: 2 }],
    ]);
    const mask = await readMask(join(out, 'disc', 'ground_truth', 'hole', '000_mask.png'));
    expect(mask.width).toBe(48);
    expect(mask.data.includes(1)).toBe(true);
    const img = await readRgb(join(out, 'disc', 'test', 'hole', '000.png'));
    expect([img.width, img.height]).toEqual([48, 48]);
  });

  it('is byte-identical for one seed and differs for another', async () => {
    const a = join(tmp.dir, 'a');
    const b = join(tmp.dir, 'b');
    const c = join(tmp.dir, 'c');
    await generateSynthetic(a, { ...small, seed: 1 });
    await generateSynthetic(b, { ...small, seed: 1 });
    await generateSynthetic(c, { ...small, seed: 2 });
    const fa = listAll(a);
    expect(fa.map((f) => f.slice(a.length))).toEqual(listAll(b).map((f) => f.slice(b.length)));
    for (const f of fa) expect(readFileSync(f).equals(readFileSync(join(b, f.slice(a.length))))).toBe(true);
    const img = join('woven', 'train', 'good', '000.png');
    expect(readFileSync(join(a, img)).equals(readFileSync(join(c, img)))).toBe(false);
  });

  it('gives masks that are exactly the altered pixels', () => {
    const size = 64;
    for (const [name, spec] of Object.entries(SYNTHETIC_CLASSES)) {
      for (const [defect, paint] of Object.entries(spec.defects) as [string, DefectPainter][]) {
        for (let k = 0; k < 4; k++) {
          const good = toBytes(spec.render(new Rng(9, 100 + k), size).canvas);
          const rng = new Rng(9, 100 + k);
          const img = spec.render(rng, size);
          const mask = paint(rng, img);
          const bad = toBytes(img.canvas);
          let inMask = 0;
          let unchangedInMask = 0;
          for (let i = 0; i < size * size; i++) {
            const changed = bad[i * 3] !== good[i * 3] || bad[i * 3 + 1] !== good[i * 3 + 1] || bad[i * 3 + 2] !== good[i * 3 + 2];
            if (mask[i]) {
              inMask++;
              if (!changed) unchangedInMask++;
            } else {
              expect(changed, `${name}/${defect}: pixel ${i} changed outside the mask`).toBe(false);
            }
          }
          expect(inMask, `${name}/${defect} mask is empty`).toBeGreaterThan(0);
          expect(unchangedInMask / inMask, `${name}/${defect}`).toBeLessThan(0.02);
        }
      }
    }
  });

  it('generates the default embedded set in seconds and reuses it', async () => {
    const out = join(tmp.dir, 'default');
    const t0 = performance.now();
    const first = await ensureSynthetic(out);
    const ms = performance.now() - t0;
    console.log(`default synthetic set (3 classes x 24 train, 6 good, 9 defective, 256 px): ${ms.toFixed(0)} ms`);
    expect(first.generated).toBe(true);
    expect(ms).toBeLessThan(30_000);
    const ds = await openDataset(out);
    expect(ds.samples).toHaveLength(3 * (24 + 6 + 9));
    expect((await ensureSynthetic(out)).generated).toBe(false);
    // Other options regenerate in place, replacing the old classes.
    expect((await ensureSynthetic(out, { ...small, classes: ['grain'] })).generated).toBe(true);
    expect((await openDataset(out)).classes).toEqual(['grain']);
  });

  it('refuses to write into a folder holding other files', async () => {
    const out = join(tmp.dir, 'foreign');
    mkdirSync(out);
    writeFileSync(join(out, 'keep.txt'), 'mine');
    await expect(generateSynthetic(out, small)).rejects.toBeInstanceOf(DatasetError);
    expect(readFileSync(join(out, 'keep.txt'), 'utf8')).toBe('mine');
  });
});
