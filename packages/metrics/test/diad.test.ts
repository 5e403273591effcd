/**
 * `diad` mode pieces against the official evaluation's numerics (utils/eval_helper.py):
 * numpy 1.x arange thresholds, the eight 8x8 poolings, and the AU-PRO definition.
 */
import { describe, expect, it } from 'vitest';
import { auPro, diadImageScore, diadProThresholds, MetricsAccumulator, UndefinedMetricError } from '../src/index.js';
import { rng } from './rng.js';

describe('official AU-PRO thresholds', () => {
  it('match numpy 1.24 np.arange(min, max, (max - min) / 200), including a 201-threshold case', () => {
    /* /usr/bin/python3, numpy 1.24.2:
       a, b = np.float32(-4.7317643), np.float32(6.433195); t = np.arange(a, b, (b - a) / 200)
       len(t), float32(t[1]), float32(t[137]), float32(t[-1]) -> 200 -4.675939559936523 2.9162325859069824 6.3773698806762695
       a, b = np.float32(1.2302907), np.float32(5.6071396)
       len(t), float32(t[-1]), float32(t[100]) -> 201 5.607139587402344 3.418715238571167 */
    const t = diadProThresholds(Math.fround(-4.7317643), Math.fround(6.433195));
    expect(t.length).toBe(200);
    expect([t[1], t[137], t[199]]).toEqual([-4.675939559936523, 2.9162325859069824, 6.3773698806762695]);
    const u = diadProThresholds(Math.fround(1.2302907), Math.fround(5.6071396));
    expect(u.length).toBe(201);
    expect([u[200], u[100]]).toEqual([5.607139587402344, 3.418715238571167]);
  });

  it('constant maps make the official AU-PRO undefined', () => {
    expect(() => diadProThresholds(1, 1)).toThrow(UndefinedMetricError);
  });
});

describe('official image score', () => {
  it('equals eight naive 2-D avg_pool2d(8, stride 1) passes, then the max', () => {
    const r = rng(3);
    const h = 61,
      w = 70;
    const map = Float32Array.from({ length: h * w }, () => r() * 4 - 1);
    let cur = Float64Array.from(map),
      ch = h,
      cw = w;
    for (let p = 0; p < 8; p++) {
      const oh = ch - 7,
        ow = cw - 7,
        out = new Float64Array(oh * ow);
      for (let y = 0; y < oh; y++)
        for (let x = 0; x < ow; x++) {
          let s = 0;
          for (let dy = 0; dy < 8; dy++) for (let dx = 0; dx < 8; dx++) s += cur[(y + dy) * cw + x + dx];
          out[y * ow + x] = s / 64;
        }
      cur = out;
      ch = oh;
      cw = ow;
    }
    expect(ch * cw).toBe(5 * 14);
    expect(diadImageScore(map, h, w)).toBeCloseTo(Math.max(...cur), 12);
  });

  it('rejects maps smaller than 57x57 and the accumulator reports image metrics as null', () => {
    expect(() => diadImageScore(new Float32Array(56 * 80), 56, 80)).toThrow(/57x57/);
    const acc = new MetricsAccumulator();
    const mask = new Uint8Array(32 * 32);
    mask[5] = 1;
    acc.add(
      'small',
      Float32Array.from({ length: 1024 }, (_, i) => i),
      mask,
      { height: 32, width: 32 },
    );
    acc.add(
      'small',
      Float32Array.from({ length: 1024 }, (_, i) => -i),
      null,
      { height: 32, width: 32 },
    );
    const row = acc.compute({ mode: 'diad' }).classes.small;
    expect(row.values.aurocImage).toBeNull();
    expect(row.reasons.aurocImage).toMatch(/57x57/);
    expect(row.values.aurocPixel).not.toBeNull();
  });
});

describe('official AU-PRO', () => {
  it('on the 400x7 column case: FPR renormalised by the largest kept FPR, no (0,0) point', () => {
    const map = Float32Array.from({ length: 2800 }, (_, i) => i / 2800);
    const mask = Uint8Array.from({ length: 2800 }, (_, i) => (i % 7 === 3 ? 1 : 0));
    // Re-derive the official value: thresholds from diadProThresholds, counts by brute force.
    const th = diadProThresholds(0, Math.fround(2799 / 2800));
    const pts: [number, number][] = [];
    for (const t of th) {
      let fp = 0,
        tp = 0;
      for (let i = 0; i < 2800; i++) if (map[i] > t) mask[i] ? tp++ : fp++;
      if (fp / 2400 < 0.3) pts.push([fp / 2400, tp / 400]);
    }
    const maxF = pts[0][0];
    let area = 0;
    for (let i = 0; i + 1 < pts.length; i++) area += 0.5 * (pts[i][1] + pts[i + 1][1]) * ((pts[i][0] - pts[i + 1][0]) / maxF);
    const ours = auPro([map], [mask], { height: 400, width: 7 }, { mode: 'diad' });
    expect(ours).toBeCloseTo(area, 12);
    // PRO ~ FPR here and only the FPR axis is stretched to [0, 1]: area just under 0.3 / 2.
    expect(ours).toBeGreaterThan(0.14);
    expect(ours).toBeLessThan(0.15);
  });
});
