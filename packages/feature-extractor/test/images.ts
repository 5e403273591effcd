/** Deterministic synthetic test images (no data files needed). */
import { Rng, tensor, type HostTensor } from '@diad/core';

/**
 * A smooth random RGB texture `[1, 3, size, size]` (sum of sinusoids, values roughly ImageNet-normalised),
 * shifted right by `shift` pixels (the content is defined on the whole plane, so a shift is exact).
 */
export function texture(seed: number, size = 256, shift = 0): HostTensor {
  const rng = new Rng(seed);
  const waves = Array.from({ length: 12 }, () => ({
    fx: rng.uniform() * 0.2,
    fy: rng.uniform() * 0.2,
    ph: rng.uniform() * 6.283,
    ch: [rng.normal(), rng.normal(), rng.normal()],
  }));
  const data = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        let v = 0;
        for (const w of waves) v += w.ch[c] * Math.sin(w.fx * (x - shift) + w.fy * y + w.ph);
        data[(c * size + y) * size + x] = 0.4 * v;
      }
  return tensor(data, [1, 3, size, size], 'NCHW');
}
