/** Deployment helpers: F1-max threshold, threshold at a target FPR, per-class normalisation. */
import { describe, expect, it } from 'vitest';
import { f1MaxThreshold, MetricsAccumulator, ScoreNormalizer, thresholdAtFpr, UndefinedMetricError } from '../src/index.js';
import { rng } from './rng.js';

describe('thresholds', () => {
  it('F1-max operating point of the hand-worked case: threshold 0.35, P 2/3, R 1, F1 0.8, FPR 1/2', () => {
    const op = f1MaxThreshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]);
    expect(op.threshold).toBe(0.35);
    expect(op.f1).toBeCloseTo(0.8, 15);
    expect(op.precision).toBeCloseTo(2 / 3, 15);
    expect(op.tpr).toBe(1);
    expect(op.fpr).toBe(0.5);
  });

  it('threshold at a target FPR on normal validation scores: lowest threshold within budget, ties respected', () => {
    const normal = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
    expect(thresholdAtFpr(normal, 0.05)).toMatchObject({ threshold: 96, fpr: 0.05, tpr: null });
    expect(thresholdAtFpr(normal, 0.055).threshold).toBe(96);
    const tied = [1, 2, 3, 3, 3, 3];
    // Flagging 3 would flag 4 of 6 (> 50 %): the threshold moves above them.
    expect(thresholdAtFpr(tied, 0.5)).toMatchObject({ fpr: 0 });
    expect(thresholdAtFpr(tied, 0.5).threshold).toBeGreaterThan(3);
    expect(thresholdAtFpr(tied, 0.5).threshold).toBeLessThan(3 + 1e-12);
    expect(thresholdAtFpr(tied, 5 / 6)).toMatchObject({ threshold: 2, fpr: 5 / 6 });
    expect(thresholdAtFpr(tied, 1).threshold).toBe(1);
  });

  it('with labels: FPR on the negatives and TPR on the positives', () => {
    const op = thresholdAtFpr([0.1, 0.2, 0.3, 0.4, 0.25, 0.9], 0.25, [0, 0, 0, 0, 1, 1]);
    expect(op).toMatchObject({ threshold: 0.4, fpr: 0.25, tpr: 0.5, precision: 0.5 });
    expect(() => thresholdAtFpr([0.1], 0.1, [1])).toThrow(UndefinedMetricError);
    expect(() => thresholdAtFpr([0.1], 2)).toThrow(/targetFpr/);
  });
});

describe('ScoreNormalizer', () => {
  it('fits per-class statistics by streaming, normalises, round-trips JSON', () => {
    const r = rng(4);
    const maps = Array.from({ length: 5 }, () => Float32Array.from({ length: 1000 }, () => 3 + 2 * r()));
    const z = new ScoreNormalizer('zscore');
    for (const m of maps) z.fit('screw', m);
    const all = maps.flatMap((m) => [...m]);
    const mean = all.reduce((a, b) => a + b, 0) / all.length;
    const std = Math.sqrt(all.reduce((a, b) => a + (b - mean) ** 2, 0) / all.length);
    expect(z.params('screw').offset).toBeCloseTo(mean, 10);
    expect(z.params('screw').scale).toBeCloseTo(std, 10);
    expect(z.normalizeScore('screw', mean + std)).toBeCloseTo(1, 10);
    const back = ScoreNormalizer.fromJSON(JSON.parse(JSON.stringify(z)));
    expect(back.params('screw')).toEqual(z.params('screw'));
    const mm = new ScoreNormalizer('minmax');
    mm.fit('screw', maps[0]);
    const n = mm.normalize('screw', maps[0]);
    expect(Math.min(...n)).toBeCloseTo(0, 6);
    expect(Math.max(...n)).toBeCloseTo(1, 6);
    expect(() => z.params('nut')).toThrow(/not fitted/);
    const flat = new ScoreNormalizer();
    flat.fit('c', [1, 1, 1]);
    expect(() => flat.params('c')).toThrow(/constant/);
  });

  it('leaves per-class metrics unchanged (increasing affine map)', () => {
    const r = rng(8);
    const raw = new MetricsAccumulator(), normed = new MetricsAccumulator();
    const norm = new ScoreNormalizer();
    for (let i = 0; i < 4; i++) norm.fit('c', Float32Array.from({ length: 64 * 64 }, () => r() * 10));
    for (let i = 0; i < 10; i++) {
      const mask = new Uint8Array(64 * 64);
      if (i % 2) for (let p = 600 + 10 * i; p < 900; p++) mask[p] = 1;
      const map = Float32Array.from(mask, (m) => Math.round(r() * 10 + 3 * m * r()) * 10);
      raw.add('c', map, mask, { height: 64, width: 64 });
      normed.add('c', norm.normalize('c', map), mask, { height: 64, width: 64 });
    }
    const a = raw.compute().classes.c.values, b = normed.compute().classes.c.values;
    for (const k of Object.keys(a) as (keyof typeof a)[]) expect(b[k]!, k).toBeCloseTo(a[k]!, 12);
  });
});
