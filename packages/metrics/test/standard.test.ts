/**
 * `standard` mode against hand-worked cases, scikit-learn / MVTec reference values computed once
 * (the Python is in the comments), and properties that must hold for any data.
 */
import { describe, expect, it } from 'vitest';
import {
  auPro,
  averagePrecision,
  binaryClassificationMetrics,
  binaryMetrics,
  binsFromScores,
  f1Max,
  MetricsAccumulator,
  pixelBins,
  rocAuc,
  standardAuPro,
  UndefinedMetricError,
} from '../src/index.js';
import { storeImage } from '../src/accumulator.js';
import { rng } from './rng.js';

describe('hand-worked cases', () => {
  it('labels [0,0,1,1], scores [0.1,0.4,0.35,0.8]: AUROC 0.75, AP 0.8333, F1-max 0.8', () => {
    const y = [0, 0, 1, 1],
      s = [0.1, 0.4, 0.35, 0.8];
    expect(rocAuc(s, y)).toBeCloseTo(0.75, 15);
    expect(averagePrecision(s, y)).toBeCloseTo(5 / 6, 15);
    expect(f1Max(s, y)).toBeCloseTo(0.8, 15);
    const m = binaryClassificationMetrics(s, y);
    expect(m.f1Threshold).toBe(0.35);
    expect(m.f1Precision).toBeCloseTo(2 / 3, 15);
    expect(m.f1Recall).toBe(1);
  });

  it('ties count half: one positive tied with one negative gives AUROC 0.5', () => {
    expect(rocAuc([0.5, 0.5], [0, 1])).toBe(0.5);
    // AP over the tie group: precision 1/2 at recall 1.
    expect(averagePrecision([0.5, 0.5], [0, 1])).toBe(0.5);
  });

  const column = (): { map: Float32Array; mask: Uint8Array } => {
    const map = new Float32Array(2800);
    const mask = new Uint8Array(2800);
    for (let i = 0; i < 2800; i++) {
      map[i] = i / 2800;
      if (i % 7 === 3) mask[i] = 1;
    }
    return { map, mask };
  };

  it('400x7 mask, column 3 anomalous, scores arange(2800)/2800: AU-PRO 1/6 at limit 1/3, 0.15 at 0.3', () => {
    const { map, mask } = column();
    // The curve runs along the diagonal with a 3-pixel staircase per row; the limit 1/3 falls two
    // normal pixels into row 134: area = (6/960000)(133^2/2) + (2/2400)(133/400) = 53333/960000.
    expect(auPro([map], [mask], { height: 400, width: 7 }, { fprLimit: 1 / 3 })).toBeCloseTo((53333 / 960000) * 3, 12);
    expect(Math.abs(auPro([map], [mask], { height: 400, width: 7 }, { fprLimit: 1 / 3 }) - 1 / 6)).toBeLessThan(2e-6);
    expect(auPro([map], [mask], { height: 400, width: 7 }, { fprLimit: 0.3 })).toBeCloseTo(0.15, 12);
  });

  it('random scores give AU-PRO near limit/2 = 0.15', () => {
    const r = rng(7);
    const maps: Float32Array[] = [],
      masks: Uint8Array[] = [];
    for (let k = 0; k < 8; k++) {
      const map = new Float32Array(128 * 128).map(() => r());
      const mask = new Uint8Array(128 * 128);
      for (let y = 20 + 5 * k; y < 60 + 5 * k; y++) for (let x = 30; x < 50 + 4 * k; x++) mask[y * 128 + x] = 1;
      maps.push(map);
      masks.push(mask);
    }
    expect(auPro(maps, masks, { height: 128, width: 128 })).toBeCloseTo(0.15, 2);
  });
});

describe('cross-checks against scikit-learn and the MVTec AD reference', () => {
  it('AUROC, AP and F1-max with many ties equal scikit-learn 1.2.1', () => {
    /* /usr/bin/python3 (Debian python3-sklearn 1.2.1):
       i = np.arange(1000); y = ((i * 31) % 7 < 2).astype(int)
       s = np.floor(((i * 7919) % 1009 + 250 * y) / 12) / 100
       roc_auc_score(y, s), average_precision_score(y, s)
       p, r, _ = precision_recall_curve(y, s); f = 2*p*r/(p+r); np.max(f[np.isfinite(f)])
       -> 0.7207792207792207 0.5883351693569807 0.515370705244123 (105 distinct scores) */
    const y: number[] = [],
      s: number[] = [];
    for (let i = 0; i < 1000; i++) {
      y.push((i * 31) % 7 < 2 ? 1 : 0);
      s.push(Math.floor((((i * 7919) % 1009) + 250 * y[i]) / 12) / 100);
    }
    expect(Math.abs(rocAuc(s, y) - 0.7207792207792207)).toBeLessThan(1e-14);
    expect(Math.abs(averagePrecision(s, y) - 0.5883351693569807)).toBeLessThan(1e-14);
    expect(Math.abs(f1Max(s, y) - 0.515370705244123)).toBeLessThan(1e-14);
  });

  it('standard AU-PRO equals the MVTec AD reference algorithm (8-connected regions, ties, interpolation)', () => {
    /* MVTec's compute_pro + trapezoid re-run with numpy/scipy (scipy.ndimage.label, structure ones((3,3))):
       H, W = 40, 50; image k in 0..2; mask: k=0 rows 5..14 x cols 10..29; k=1 |y-x|<=1 for y<30
       (a diagonal, 8-connected) and rows 30..34 x cols 40..47; k=2 none.
       score = float32(floor(((y*W + x)*7919 + k*101) % 997 / 10) / 100 + 0.5*mask)
       -> limit 0.3: 0.588716483614203, limit 0.05: 0.45367219264467007 */
    const H = 40,
      W = 50;
    const maps: Float32Array[] = [],
      masks: Uint8Array[] = [];
    for (let k = 0; k < 3; k++) {
      const map = new Float32Array(H * W),
        mask = new Uint8Array(H * W);
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          let m = 0;
          if (k === 0 && y >= 5 && y < 15 && x >= 10 && x < 30) m = 1;
          if (k === 1 && ((Math.abs(y - x) <= 1 && y < 30) || (y >= 30 && y < 35 && x >= 40 && x < 48))) m = 1;
          mask[y * W + x] = m;
          map[y * W + x] = Math.floor((((y * W + x) * 7919 + k * 101) % 997) / 10) / 100 + 0.5 * m;
        }
      }
      maps.push(map);
      masks.push(mask);
    }
    expect(Math.abs(auPro(maps, masks, { height: H, width: W }) - 0.588716483614203)).toBeLessThan(1e-12);
    expect(Math.abs(auPro(maps, masks, { height: H, width: W }, { fprLimit: 0.05 }) - 0.45367219264467007)).toBeLessThan(1e-12);
  });
});

/** Small random pixel data with deliberate ties (scores on a coarse grid). */
function randomPixels(seed: number, images: number, h: number, w: number, grid: number) {
  const r = rng(seed);
  const maps: Float32Array[] = [],
    masks: Uint8Array[] = [];
  for (let k = 0; k < images; k++) {
    const mask = new Uint8Array(h * w);
    const blobs = Math.floor(r() * 3);
    for (let b = 0; b < blobs; b++) {
      const cy = Math.floor(r() * h),
        cx = Math.floor(r() * w),
        rad = 1 + Math.floor(r() * 4);
      for (let y = Math.max(0, cy - rad); y < Math.min(h, cy + rad); y++)
        for (let x = Math.max(0, cx - rad); x < Math.min(w, cx + rad); x++) mask[y * w + x] = 1;
    }
    maps.push(Float32Array.from(mask, (m) => Math.floor((r() + 0.4 * m) * grid) / grid - 0.3));
    masks.push(mask);
  }
  return { maps, masks };
}

/** Brute-force standard AU-PRO: sort every pixel, walk distinct thresholds, trapezoid with interpolation. */
function bruteAuPro(maps: Float32Array[], masks: Uint8Array[], h: number, w: number, limit: number): number {
  const items: { s: number; neg: number; w: number }[] = [];
  let N = 0,
    K = 0;
  const regionsOf: number[][] = [];
  for (let k = 0; k < maps.length; k++) {
    // Flood fill, 8-connected.
    const lab = new Int32Array(h * w);
    const areas: number[] = [];
    for (let i = 0; i < h * w; i++) {
      if (!masks[k][i] || lab[i]) continue;
      const id = areas.length + 1;
      let area = 0;
      const stack = [i];
      lab[i] = id;
      while (stack.length) {
        const p = stack.pop()!;
        area++;
        const py = Math.floor(p / w),
          px = p % w;
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++) {
            const y = py + dy,
              x = px + dx;
            if (y < 0 || y >= h || x < 0 || x >= w) continue;
            const q = y * w + x;
            if (masks[k][q] && !lab[q]) {
              lab[q] = id;
              stack.push(q);
            }
          }
      }
      areas.push(area);
    }
    regionsOf.push(areas);
    K += areas.length;
    for (let i = 0; i < h * w; i++) {
      if (lab[i]) items.push({ s: maps[k][i], neg: 0, w: 1 / areas[lab[i] - 1] });
      else {
        items.push({ s: maps[k][i], neg: 1, w: 0 });
        N++;
      }
    }
  }
  items.sort((a, b) => b.s - a.s);
  const xs = [0],
    ys = [0];
  let fp = 0,
    pw = 0;
  for (let i = 0; i < items.length; i++) {
    fp += items[i].neg;
    pw += items[i].w;
    if (i === items.length - 1 || items[i + 1].s !== items[i].s) {
      xs.push(fp / N);
      ys.push(pw / K);
    }
  }
  let area = 0;
  for (let i = 1; i < xs.length; i++) {
    if (xs[i] <= limit) area += 0.5 * (ys[i] + ys[i - 1]) * (xs[i] - xs[i - 1]);
    else {
      const yl = ys[i - 1] + ((ys[i] - ys[i - 1]) * (limit - xs[i - 1])) / (xs[i] - xs[i - 1]);
      area += 0.5 * (yl + ys[i - 1]) * (limit - xs[i - 1]);
      break;
    }
  }
  return area / limit;
}

describe('properties', () => {
  it('pixel rank bins give the same AUROC / AP / F1-max as sorting everything, and AU-PRO as brute force', () => {
    for (const [seed, grid] of [
      [1, 20],
      [2, 1000],
      [3, 1 << 20],
    ]) {
      const { maps, masks } = randomPixels(seed, 6, 24, 31, grid);
      const images = maps.map((m, i) => storeImage(`image ${i}`, m, masks[i], { height: 24, width: 31 }));
      const bins = pixelBins(images, null);
      const flat = new Float32Array(maps.length * 24 * 31);
      const lab = new Uint8Array(flat.length);
      maps.forEach((m, i) => {
        flat.set(m, i * m.length);
      });
      masks.forEach((m, i) => {
        lab.set(m, i * m.length);
      });
      const a = binaryMetrics(bins),
        b = binaryMetrics(binsFromScores(flat, lab));
      expect(a.auroc).toBeCloseTo(b.auroc, 14);
      expect(a.ap).toBeCloseTo(b.ap, 14);
      expect(a.f1Max).toBeCloseTo(b.f1Max, 14);
      expect(a.f1Threshold).toBe(b.f1Threshold);
      for (const limit of [0.3, 0.05, 1]) expect(standardAuPro(bins, limit)).toBeCloseTo(bruteAuPro(maps, masks, 24, 31, limit), 12);
    }
  });

  it('every standard metric is invariant under a strictly increasing transform of the scores', () => {
    const { maps, masks } = randomPixels(4, 20, 64, 64, 200);
    const f = (v: number): number => Math.exp(3 * v) - 7; // injective on the 1/200 grid, also in float32
    const add = (acc: MetricsAccumulator, t: (v: number) => number) =>
      maps.forEach((m, i) => {
        acc.add('c', Float32Array.from(m, t), masks[i], { height: 64, width: 64 });
      });
    const a = new MetricsAccumulator(),
      b = new MetricsAccumulator();
    add(a, (v) => v);
    add(b, f);
    const ra = a.compute().classes.c.values,
      rb = b.compute().classes.c.values;
    for (const k of Object.keys(ra) as (keyof typeof ra)[]) {
      expect(ra[k], k).not.toBeNull();
      expect(rb[k]!, k).toBeCloseTo(ra[k]!, 12);
    }
  });

  it('AUROC(-scores) = 1 - AUROC(scores) in standard mode (ties included)', () => {
    const r = rng(11);
    const s = Array.from({ length: 500 }, () => Math.floor(r() * 30));
    const y = s.map((v) => (r() < 0.2 + v / 60 ? 1 : 0));
    expect(
      rocAuc(
        s.map((v) => -v),
        y,
      ),
    ).toBeCloseTo(1 - rocAuc(s, y), 14);
    // diad mode folds it back above 0.5.
    expect(
      rocAuc(
        s.map((v) => -v),
        y,
        'diad',
      ),
    ).toBeCloseTo(rocAuc(s, y), 14);
  });

  it('single-metric functions throw UndefinedMetricError on one-class data', () => {
    expect(() => rocAuc([0.1, 0.2], [0, 0])).toThrow(UndefinedMetricError);
    expect(() => averagePrecision([0.1, 0.2], [1, 1])).toThrow(/no negative/);
    expect(() => auPro([new Float32Array(4)], [new Uint8Array(4)], { height: 2, width: 2 })).toThrow(/no defective pixel/);
  });
});

describe('README standalone example', () => {
  it('gives the values the README states, from plain arrays', () => {
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.75);
    const map = Float32Array.from([0.9, 0.8, 0.1, 0.2, 0.25, 0.1, 0.3, 0.2, 0.1]);
    const mask = Uint8Array.from([1, 1, 0, 0, 1, 0, 0, 0, 0]);
    // PRO 2/3 for FPR in [0, 1/6], then 1 up to 0.3: (2/3 * 1/6 + 1 * (0.3 - 1/6)) / 0.3 = 22/27.
    expect(auPro([map], [mask], { height: 3, width: 3 })).toBeCloseTo(22 / 27, 12);
  });
});
