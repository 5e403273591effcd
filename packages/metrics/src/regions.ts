/**
 * 8-connected labelling of a binary mask (the ground-truth regions of AU-PRO). Same regions as
 * `scipy.ndimage.label(mask, structure=np.ones((3, 3)))` (MVTec AD reference) and
 * `skimage.measure.label(mask)` with its default full connectivity (DiAD official eval).
 */

/**
 * Label the nonzero pixels of a row-major `height x width` mask into 8-connected regions.
 * @param labels output, length >= height*width: 0 for background, 1..count for regions.
 * @returns `count` and `areas` (areas[r - 1] = pixel count of region r).
 */
export function labelRegions8(mask: Uint8Array, height: number, width: number, labels: Int32Array): { count: number; areas: Uint32Array } {
  const n = height * width;
  // Union-find over provisional labels, two raster passes.
  const parent: number[] = [0];
  const find = (a: number): number => {
    while (parent[a] !== a) {
      parent[a] = parent[parent[a]];
      a = parent[a];
    }
    return a;
  };
  const union = (a: number, b: number): number => {
    const ra = find(a),
      rb = find(b);
    if (ra === rb) return ra;
    if (ra < rb) {
      parent[rb] = ra;
      return ra;
    }
    parent[ra] = rb;
    return rb;
  };
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const i = row + x;
      if (!mask[i]) {
        labels[i] = 0;
        continue;
      }
      let l = 0;
      if (x > 0 && labels[i - 1]) l = labels[i - 1];
      if (y > 0) {
        const up = i - width;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const m = labels[up + dx];
          if (m) l = l ? union(l, m) : m;
        }
      }
      if (!l) {
        l = parent.length;
        parent.push(l);
      }
      labels[i] = l;
    }
  }
  const compact = new Int32Array(parent.length);
  let count = 0;
  for (let l = 1; l < parent.length; l++) {
    const r = find(l);
    if (!compact[r]) compact[r] = ++count;
    compact[l] = compact[r];
  }
  const areas = new Uint32Array(count);
  for (let i = 0; i < n; i++) {
    const l = labels[i];
    if (l) {
      const c = compact[l];
      labels[i] = c;
      areas[c - 1]++;
    }
  }
  return { count, areas };
}
