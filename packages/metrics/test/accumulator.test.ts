/**
 * The accumulator: undefined cases said, not faked; bad input refused; defect-type rows; the
 * table; and the low-level pieces it stands on (radix sort, 8-connected labelling).
 */
import { describe, expect, it } from 'vitest';
import {
  floatToKey,
  formatTable,
  keyToFloat,
  labelRegions8,
  MetricsAccumulator,
  MetricsInputError,
  radixSortPairs,
  toOfficialKeys,
  type MetricValues,
} from '../src/index.js';
import { rng } from './rng.js';

const H = 60,
  W = 64;

/** Same metrics up to float rounding (summation order may differ). */
function expectClose(a: MetricValues, b: MetricValues): void {
  for (const k of Object.keys(a) as (keyof MetricValues)[]) {
    expect(a[k], k).not.toBeNull();
    expect(a[k]!, k).toBeCloseTo(b[k]!, 12);
  }
}

/** An image with a square defect of the given side (0 = normal) and noisy scores. */
function image(r: () => number, side: number, gain = 0.8): { map: Float32Array; mask: Uint8Array | null } {
  const mask = new Uint8Array(H * W);
  const y0 = Math.floor(r() * (H - side)),
    x0 = Math.floor(r() * (W - side));
  for (let y = y0; y < y0 + side; y++) for (let x = x0; x < x0 + side; x++) mask[y * W + x] = 1;
  const map = Float32Array.from(mask, (m) => r() + gain * m * r());
  return { map, mask: side ? mask : null };
}

describe('undefined cases', () => {
  it('a class without anomalous images: image and pixel metrics null with reasons; the mean says which class', () => {
    const r = rng(1);
    const acc = new MetricsAccumulator();
    for (let i = 0; i < 6; i++) {
      const a = image(r, i % 2 ? 8 : 0);
      acc.add('good', a.map, a.mask, { height: H, width: W });
      const b = image(r, 0);
      acc.add('allnormal', b.map, b.mask, { height: H, width: W });
    }
    const rep = acc.compute();
    const row = rep.classes.allnormal;
    for (const k of ['aurocImage', 'apImage', 'f1MaxImage'] as const) {
      expect(row.values[k]).toBeNull();
      expect(row.reasons[k]).toMatch(/no positive/);
    }
    expect(row.values.aurocPixel).toBeNull();
    expect(row.reasons.auPro).toMatch(/no defective pixel/);
    expect(rep.classes.good.values.aurocImage).not.toBeNull();
    expect(rep.mean.values.aurocImage).toBeNull();
    expect(rep.mean.reasons.aurocImage).toMatch(/allnormal/);
  });

  it('a class without normal images: image metrics null, pixel metrics defined', () => {
    const r = rng(2);
    const acc = new MetricsAccumulator();
    for (let i = 0; i < 4; i++) {
      const a = image(r, 10);
      acc.add('bad', a.map, a.mask, { height: H, width: W });
    }
    const row = acc.compute({ mode: 'diad' }).classes.bad;
    expect(row.values.aurocImage).toBeNull();
    expect(row.reasons.aurocImage).toMatch(/no negative/);
    expect(row.values.aurocPixel).toBeGreaterThan(0.5);
    expect(row.values.auPro).not.toBeNull();
  });

  it('an anomalous image whose mask is empty counts at image level only', () => {
    const r = rng(3);
    const acc = new MetricsAccumulator();
    const a = image(r, 0),
      b = image(r, 0);
    acc.add('c', a.map, null, { height: H, width: W, label: 1 });
    acc.add('c', b.map, null, { height: H, width: W });
    const row = acc.compute().classes.c;
    expect(row.values.aurocImage).not.toBeNull();
    expect(row.values.aurocPixel).toBeNull();
    expect(row.reasons.aurocPixel).toMatch(/no defective pixel/);
  });

  it('refuses NaN or infinite scores, differing shapes, wrong types and contradicting labels', () => {
    const acc = new MetricsAccumulator();
    const map = new Float32Array(H * W);
    map[70] = NaN;
    expect(() => acc.add('c', map, null, { height: H, width: W })).toThrow(/pixel 70 \(row 1, column 6\) has score NaN/);
    map[70] = Infinity;
    expect(() => acc.add('c', map, null, { height: H, width: W })).toThrow(MetricsInputError);
    expect(() => acc.add('c', new Float32Array(10), null, { height: H, width: W })).toThrow(/same shape/);
    expect(() => acc.add('c', new Float32Array(H * W), new Uint8Array(5), { height: H, width: W })).toThrow(/same shape/);
    expect(() => acc.add('c', new Float32Array(H * W), new Float32Array(H * W) as unknown as Uint8Array, { height: H, width: W })).toThrow(/Uint8Array/);
    const mask = new Uint8Array(H * W).fill(1);
    expect(() => acc.add('c', new Float32Array(H * W), mask, { height: H, width: W, label: 0 })).toThrow(/labelled normal/);
    expect(() => acc.compute()).toThrow(/no image was added/);
    expect(() => acc.imageScores('nope', 'standard')).toThrow(/unknown class "nope"/);
  });
});

describe('reports', () => {
  const build = (): MetricsAccumulator => {
    const r = rng(5);
    const acc = new MetricsAccumulator();
    for (const cls of ['bottle', 'cable']) {
      for (let i = 0; i < 12; i++) {
        const type = i < 4 ? 'good' : i % 2 ? 'crack' : 'scratch';
        const a = image(r, type === 'good' ? 0 : type === 'crack' ? 6 : 14, type === 'crack' ? 0.3 : 0.9);
        acc.add(cls, a.map, a.mask, { height: H, width: W, defectType: type });
      }
    }
    return acc;
  };

  it('defect-type rows equal an evaluation of that type plus the normal images', () => {
    const acc = build();
    const rep = acc.computeAll(['standard', 'diad'], { byDefectType: true });
    for (const mode of ['standard', 'diad'] as const) {
      const row = rep[mode]!.classes.bottle;
      expect(Object.keys(row.defectTypes).sort()).toEqual(['crack', 'scratch']);
      const r = rng(5);
      const only = new MetricsAccumulator();
      for (const cls of ['bottle', 'cable']) {
        for (let i = 0; i < 12; i++) {
          const type = i < 4 ? 'good' : i % 2 ? 'crack' : 'scratch';
          const a = image(r, type === 'good' ? 0 : type === 'crack' ? 6 : 14, type === 'crack' ? 0.3 : 0.9);
          if (cls === 'bottle' && type !== 'scratch') only.add(cls, a.map, a.mask, { height: H, width: W });
        }
      }
      const ref = only.compute({ mode }).classes.bottle;
      expectClose(row.defectTypes.crack.values, ref.values);
      expect(row.defectTypes.crack.images).toBe(8);
      // Weak cracks are harder than strong scratches.
      expect(row.defectTypes.crack.values.aurocPixel!).toBeLessThan(row.defectTypes.scratch.values.aurocPixel!);
    }
  });

  it('computeAll shares work but equals separate computes; mean is the unweighted class mean', () => {
    const acc = build();
    const both = acc.computeAll(['standard', 'diad']);
    for (const mode of ['standard', 'diad'] as const) {
      const one = acc.compute({ mode });
      for (const cls of ['bottle', 'cable']) expectClose(both[mode]!.classes[cls].values, one.classes[cls].values);
      expect(one.mean.values.auPro).toBeCloseTo((one.classes.bottle.values.auPro! + one.classes.cable.values.auPro!) / 2, 15);
    }
    expect(both.standard!.classes.bottle.values.auPro).not.toBeCloseTo(both.diad!.classes.bottle.values.auPro!, 3);
  });

  it('formats the seven-column table and the official keys', () => {
    const rep = build().compute();
    const table = formatTable(rep, { digits: 2, defectTypes: true }).split('\n');
    expect(table[0]).toBe('| class (standard) | image AUROC | image AP | image F1-max | pixel AUROC | pixel AP | pixel F1-max | AU-PRO |');
    expect(table[1]).toBe('|---|---:|---:|---:|---:|---:|---:|---:|');
    expect(table.at(-1)).toMatch(new RegExp(`^\\| mean \\| ${(100 * rep.mean.values.aurocImage!).toFixed(2)} \\|`));
    const keys = toOfficialKeys(rep);
    expect(keys.bottle_pro_auc).toBe(rep.classes.bottle.values.auPro);
    expect(keys.mean_f1sp_auc).toBe(rep.mean.values.f1MaxImage);
  });
});

describe('building blocks', () => {
  it('radix sort orders float keys like the floats (negatives, zero, subnormals) and is stable', () => {
    const r = rng(9);
    const vals = [-1e30, -3.5, -1e-40, 0, 1e-42, 1e-3, 0.5, 7, 3e38];
    const n = 5000;
    const f = Float32Array.from({ length: n }, () => vals[Math.floor(r() * vals.length)] * (r() < 0.5 ? 1 : 1.25));
    const keys = Uint32Array.from(f, (v) => floatToKey(v));
    const idx = Uint32Array.from({ length: n }, (_, i) => i);
    radixSortPairs(keys, idx, new Uint32Array(n), new Uint32Array(n));
    const expected = [...f.keys()].sort((a, b) => f[a] - f[b] || a - b);
    expect([...idx]).toEqual(expected);
    for (let i = 0; i < n; i++) expect(keyToFloat(keys[i])).toBe(f[idx[i]]);
  });

  it('labels 8-connected regions: diagonal neighbours join, a U shape is one region', () => {
    const rows = ['1000011', '0100001', '0010111', '0000000', '1010100', '1111100'];
    const h = rows.length,
      w = rows[0].length;
    const mask = Uint8Array.from(rows.join(''), (c) => Number(c));
    const labels = new Int32Array(h * w);
    const { count, areas } = labelRegions8(mask, h, w, labels);
    expect(count).toBe(3);
    expect([...areas].sort((a, b) => a - b)).toEqual([3, 6, 8]);
    expect(labels[0]).toBe(labels[2 * w + 2]);
    expect(labels[4 * w + 0]).toBe(labels[4 * w + 4]);
  });
});
