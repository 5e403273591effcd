/**
 * Image anomaly scores from a pixel anomaly map.
 */
import { MetricsInputError } from './errors.js';

/** `standard` image score: the maximum of the anomaly map. */
export function maxImageScore(map: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < map.length; i++) if (map[i] > m) m = map[i];
  return m;
}

/** Side length eaten by the eight official poolings: 8 x (kernel 8 - 1). */
export const DIAD_POOL_SHRINK = 56;

/**
 * Official DiAD image score (`utils/eval_helper.EvalImageMax.encode_pred`): the maximum after
 * applying `torch.nn.functional.avg_pool2d(kernel_size=8, stride=1)` (no padding) eight times,
 * i.e. a 57x57 smoothing. Computed separably with running sums in float64 (torch sums in
 * float32, so values differ from it by ~1e-7 relative).
 * @param map row-major `height x width` anomaly map.
 * @param scratch optional Float64Array of length >= height*width, reused between calls.
 * @throws MetricsInputError when a side is below 57 pixels (torch would fail too).
 */
export function diadImageScore(map: Float32Array, height: number, width: number, scratch?: Float64Array): number {
  if (height <= DIAD_POOL_SHRINK || width <= DIAD_POOL_SHRINK) {
    throw new MetricsInputError(`a ${height}x${width} map is too small for the official image score (eight 8x8 stride-1 average poolings need at least 57x57)`);
  }
  const n = height * width;
  const a = scratch && scratch.length >= n ? scratch : new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = map[i];
  // Horizontal: 8 passes of an 8-tap running mean, in place with row stride `width`.
  let w = width;
  for (let pass = 0; pass < 8; pass++) {
    const wo = w - 7;
    for (let y = 0; y < height; y++) {
      const r = y * width;
      let s = a[r] + a[r + 1] + a[r + 2] + a[r + 3] + a[r + 4] + a[r + 5] + a[r + 6] + a[r + 7];
      for (let x = 0; x < wo; x++) {
        const old = a[r + x];
        a[r + x] = s / 8;
        if (x + 8 < w) s += a[r + x + 8] - old;
      }
    }
    w = wo;
  }
  // Vertical: same along columns, one row accumulator.
  let h = height;
  const acc = new Float64Array(w);
  for (let pass = 0; pass < 8; pass++) {
    const ho = h - 7;
    acc.fill(0);
    for (let dy = 0; dy < 8; dy++) for (let x = 0; x < w; x++) acc[x] += a[dy * width + x];
    for (let y = 0; y < ho; y++) {
      const r = y * width;
      const below = (y + 8) * width;
      const more = y + 8 < h;
      for (let x = 0; x < w; x++) {
        const old = a[r + x];
        a[r + x] = acc[x] / 8;
        if (more) acc[x] += a[below + x] - old;
      }
    }
    h = ho;
  }
  let m = -Infinity;
  for (let y = 0; y < h; y++) {
    const r = y * width;
    for (let x = 0; x < w; x++) if (a[r + x] > m) m = a[r + x];
  }
  return m;
}
