/**
 * Heatmaps: the jet colormap (as matplotlib's `jet`, piecewise linear) and its overlay on an
 * image, used by the report strips, `diad predict` and `diad serve`.
 */

/** jet(v) for v in [0, 1] (clamped) as RGB bytes. */
export function jet(v: number): [number, number, number] {
  const t = Math.min(1, Math.max(0, v));
  const ch = (x: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - x))));
  return [ch(3), ch(2), ch(1)];
}

/**
 * Colours an anomaly map and blends it over an RGB image.
 * @param map `H*W` anomaly scores (row-major).
 * @param rgb `H*W*3` interleaved bytes of the image, or null for the bare heatmap.
 * @param lo score shown as the coldest colour; @param hi score shown as the hottest.
 * @param alpha weight of the heatmap in the blend (0.5 default).
 * @returns `H*W*3` interleaved RGB bytes.
 */
export function overlayHeatmap(map: Float32Array, rgb: Uint8Array | null, lo: number, hi: number, alpha = 0.5): Uint8Array {
  const out = new Uint8Array(map.length * 3);
  const span = hi > lo ? hi - lo : 1;
  for (let i = 0; i < map.length; i++) {
    const c = jet((map[i] - lo) / span);
    for (let k = 0; k < 3; k++) out[3 * i + k] = rgb ? Math.round(alpha * c[k] + (1 - alpha) * rgb[3 * i + k]) : c[k];
  }
  return out;
}
