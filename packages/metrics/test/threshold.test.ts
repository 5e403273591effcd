/** Deployment helpers: F1-max threshold, threshold at a target FPR, per-class normalisation. */
import { describe, expect, it } from 'vitest';
import { f1MaxThreshold, thresholdAtFpr, UndefinedMetricError } from '../src/index.js';

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
