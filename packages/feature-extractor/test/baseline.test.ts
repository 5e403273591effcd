import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { baseline } from '../src/index.js';
import { dataDir, present } from './fixtures.js';

const root = join(dataDir, 'mvtec_ad');

describe.skipIf(!present(join(root, 'grid'), 'baseline on shared data'))('baseline() on real data', () => {
  it('localises the defects of MVTec grid with the default backbone', async () => {
    const r = await baseline({ data: root, classes: ['grid'], backbone: 'mobilenet_v2', maxTrain: 10, bankSize: 2000, seed: 0 });
    const s = r.classes.grid;
    expect(s.train).toBe(10);
    expect(s.bank).toBe(2000);
    expect(s.test).toBe(14);
    const v = r.standard.classes.grid.values;
    // The full run (25 train images, bank 10 000) gives pixel AUROC 0.91 and AU-PRO 0.66.
    expect(v.aurocPixel).toBeGreaterThan(0.8);
    expect(v.auPro).toBeGreaterThan(0.4);
    expect(r.diad.classes.grid.values.aurocPixel).toBeGreaterThan(0.8);
  });
});
