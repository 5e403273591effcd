/**
 * The whole job from a script, without the CLI: fit a `ci` run on synthetic data through
 * @diad/pipeline, then test it with a feature extractor registered here, from outside the packages
 * (a few lines: average-pooled RGB at strides 4/8/16). Its image scores must equal a direct
 * computation with the same registered extractor.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scoreImages, tensor, type FeatureExtractor, type HostTensor } from '@diad/core';
import { generateSynthetic, loadBatch, openDataset } from '@diad/datasets';
import { featureExtractors } from '@diad/feature-extractor';
import { RunDir, applyInferenceSets, fit, openInference, readValidation, resolveConfig, resolveSettings, testRun } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'diad-library-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Average pooling of `[N, C, H, W]` by `s` (H, W multiples of s). */
function avgPool(x: HostTensor, s: number): HostTensor {
  const [n, c, h, w] = x.shape;
  const [ho, wo] = [h / s, w / s];
  const out = new Float32Array(n * c * ho * wo);
  for (let i = 0; i < n * c; i++)
    for (let y = 0; y < h; y++)
      for (let xx = 0; xx < w; xx++) out[(i * ho + Math.floor(y / s)) * wo + Math.floor(xx / s)] += x.data[(i * h + y) * w + xx] / (s * s);
  return tensor(out, [n, c, ho, wo], 'NCHW');
}

let calls = 0;
const pooledRgb: FeatureExtractor = {
  strides: [4, 8, 16],
  async extract(images) {
    calls += images.shape[0];
    return [4, 8, 16].map((s) => avgPool(images, s));
  },
};

describe('@diad/pipeline as a library', () => {
  it('fits a run, then tests it with a feature extractor registered from outside the packages', async () => {
    featureExtractors.register('pooled-rgb-test', {
      load: async () => ({ extractor: pooledRgb, provenance: 'pooled RGB (library test)', engine: 'host', dispose() {} }),
    });

    const data = join(dir, 'data');
    await generateSynthetic(data, { size: 64, train: 4, testGood: 1, testDefective: 1, classes: ['disc', 'woven'] });
    const cfg = resolveConfig('ci', { roots: [data] });
    const run = await RunDir.open(join(dir, 'run'), cfg);
    await fit(run, { quiet: true, log: () => {} });

    const validation = await readValidation(run);
    const settings = resolveSettings(run, validation, ['featureExtractor=pooled-rgb-test', 'anomalyMap.sigma=1']);
    expect(settings.featureExtractor).toEqual({ kind: 'pooled-rgb-test' });
    const { out, report } = await testRun(run, { settings, out: join(dir, 'test-pooled'), quiet: true, log: () => {} });

    const m = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8'));
    expect(m.provenance.featureExtractor).toBe('pooled RGB (library test)');
    expect(m.provenance.inference.featureExtractor).toEqual({ kind: 'pooled-rgb-test' });
    expect(Object.keys(m.modes.standard.classes)).toEqual(['disc', 'woven']);
    const samples = (await openDataset([data])).samples.filter((s) => s.split === 'test');
    expect(report.images).toHaveLength(samples.length);
    // Validation normals (calibration) and test images, each with its reconstruction, went through it.
    expect(calls).toBeGreaterThanOrEqual(2 * samples.length);

    // The report's score of each test image equals the same computation done directly.
    const batch = await loadBatch(samples, { size: 64 });
    const stages = await openInference(run, settings, {}, () => {});
    try {
      const direct = await scoreImages(stages, batch.images, settings, cfg.seed);
      for (let i = 0; i < samples.length; i++) {
        const rec = report.images.find((r) => r.path === samples[i].imagePath)!;
        expect(rec.score).toBeCloseTo(direct.scores[i], 5);
      }
    } finally {
      await stages.dispose();
    }

    // An unknown kind is refused before any work, listing the registered ones.
    const bad = applyInferenceSets(settings, ['featureExtractor=nope']);
    await expect(testRun(run, { settings: bad, out: join(dir, 'test-bad') })).rejects.toThrow(
      /inference\.featureExtractor\.kind: unknown feature extractor "nope"; registered: .*pooled-rgb-test/,
    );
  }, 600_000);
});
