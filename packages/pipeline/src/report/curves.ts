/**
 * ROC and PRO curves for the report's plots, read off @diad/metrics' rank bins (the exact
 * summary its metrics are computed from), walking the thresholds from high to low as its
 * `binaryMetrics` and `standardAuPro` do. @diad/metrics computes the areas; this only draws.
 */
import { binsFromScores, pixelBins, type RankBins, type StoredImage } from '@diad/metrics';
import type { Curve } from './types.js';

/** ROC curve (FPR, TPR) through (0, 0) and every distinct threshold to (1, 1). */
export function rocCurve(b: RankBins): Curve {
  const { P, N, pos, eq, btw } = b;
  const x = [0],
    y = [0];
  if (P === 0 || N === 0) return { x, y };
  let fp = 0,
    tp = 0;
  for (let j = b.values.length - 1; j >= 0; j--) {
    if (btw[j + 1] > 0) {
      fp += btw[j + 1];
      x.push(fp / N), y.push(tp / P);
    }
    fp += eq[j];
    tp += pos[j];
    x.push(fp / N), y.push(tp / P);
  }
  x.push(1), y.push(1);
  return { x, y };
}

/** PRO curve (FPR, mean per-region overlap) from (0, 0) up to FPR `limit` (standard AU-PRO's curve). */
export function proCurve(b: RankBins, limit = 0.3): Curve {
  const x = [0],
    y = [0];
  if (!b.weight || b.K === 0 || b.N === 0) return { x, y };
  let fp = 0,
    w = 0;
  for (let j = b.values.length - 1; j >= 0 && x[x.length - 1] < limit; j--) {
    if (b.btw[j + 1] > 0) {
      fp += b.btw[j + 1];
      x.push(fp / b.N), y.push(w / b.K);
    }
    fp += b.eq[j];
    w += b.weight[j];
    x.push(fp / b.N), y.push(w / b.K);
  }
  return { x, y };
}

/** A test image as @diad/metrics stores it (maps `H*W`, masks 0/1 or null). */
export function storedImage(map: Float32Array, mask: Uint8Array | null, height: number, width: number, label: 0 | 1, defectType: string): StoredImage {
  let min = Infinity,
    max = -Infinity,
    defectPixels = 0;
  for (let i = 0; i < map.length; i++) {
    if (map[i] < min) min = map[i];
    if (map[i] > max) max = map[i];
  }
  if (mask) for (let i = 0; i < mask.length; i++) if (mask[i]) defectPixels++;
  return { map, mask: defectPixels ? mask : null, height, width, label, defectType, defectPixels, min, max };
}

/** The three curves of one class. */
export function classCurves(scores: number[], labels: number[], images: StoredImage[]): { imageRoc: Curve; pixelRoc: Curve; pro: Curve } {
  const imageRoc = rocCurve(binsFromScores(scores, labels));
  const hasDefect = images.some((i) => i.defectPixels > 0);
  const pb = hasDefect ? pixelBins(images, null) : null;
  return { imageRoc, pixelRoc: pb ? rocCurve(pb) : { x: [0], y: [0] }, pro: pb ? proCurve(pb) : { x: [0], y: [0] } };
}
