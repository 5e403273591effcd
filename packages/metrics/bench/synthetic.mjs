/**
 * Deterministic synthetic MVTec-sized test set: 15 classes x 115 images of 256x256 (1725 images,
 * 113 million pixels), ~27% normal images (as MVTec AD's test split), 1-3 elliptic defects per
 * anomalous image, 4 defect types per class. Scores: float32 noise, raised inside defects and at
 * random false alarms, so every metric lands in a realistic range.
 */

/** mulberry32: small, fast, seeded. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const CLASSES = 15,
  PER_CLASS = 115,
  H = 256,
  W = 256;

/** Calls visit(cls, imageIndexInClass, map, mask | null, defectType) for every image, in order. */
export function generate(visit, seed = 1) {
  const r = rng(seed);
  const map = new Float32Array(H * W);
  const mask = new Uint8Array(H * W);
  for (let c = 0; c < CLASSES; c++) {
    const cls = `class${String(c).padStart(2, '0')}`;
    for (let k = 0; k < PER_CLASS; k++) {
      const anomalous = r() > 0.27;
      const type = anomalous ? `type${Math.floor(r() * 4)}` : 'good';
      const level = 0.3 + 0.4 * r();
      for (let i = 0; i < H * W; i++) map[i] = r() * level;
      mask.fill(0);
      const blobs = anomalous ? 1 + Math.floor(r() * 3) : 0;
      const alarms = Math.floor(r() * 3);
      for (let b = 0; b < blobs + alarms; b++) {
        const cy = r() * H,
          cx = r() * W,
          ry = 4 + r() * 20,
          rx = 4 + r() * 20,
          gain = 0.2 + 0.6 * r();
        const y0 = Math.max(0, Math.floor(cy - ry)),
          y1 = Math.min(H - 1, Math.ceil(cy + ry));
        const x0 = Math.max(0, Math.floor(cx - rx)),
          x1 = Math.min(W - 1, Math.ceil(cx + rx));
        for (let y = y0; y <= y1; y++) {
          for (let x = x0; x <= x1; x++) {
            const d = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2;
            if (d > 1) continue;
            map[y * W + x] += gain * (1 - d) * r();
            if (b < blobs) mask[y * W + x] = 1;
          }
        }
      }
      visit(cls, k, map, anomalous ? mask : null, type);
    }
  }
}
