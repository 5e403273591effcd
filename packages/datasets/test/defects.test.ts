import { describe, expect, it } from 'vitest';
import { Rng, tensor, type HostTensor } from '@diad/core';
import { DEFECT_KINDS, synthesizeDefects } from '../src/index.js';

/** Textured test images [n, 3, size, size]: smooth gradients plus seeded noise, ImageNet-like units. */
function images(n: number, size = 64, seed = 3): HostTensor {
  const rng = new Rng(seed);
  const data = new Float32Array(n * 3 * size * size);
  for (let i = 0; i < data.length; i++) {
    const p = i % (size * size);
    data[i] = -1 + 2 * ((p % size) / size) * 0.5 + 0.3 * rng.normal();
  }
  return tensor(data, [n, 3, size, size], 'NCHW');
}

describe('synthesizeDefects', () => {
  const x = images(10);

  it('changes exactly the masked pixels, every kind, with sizable regions', () => {
    const r = synthesizeDefects(x, { seed: 7 });
    expect(r.kinds).toEqual([...DEFECT_KINDS, ...DEFECT_KINDS]);
    expect(r.masks.shape).toEqual([10, 1, 64, 64]);
    const hw = 64 * 64;
    for (let i = 0; i < 10; i++) {
      let area = 0;
      for (let p = 0; p < hw; p++) {
        const m = r.masks.data[i * hw + p];
        area += m;
        let maxDiff = 0;
        for (let c = 0; c < 3; c++) {
          const k = (i * 3 + c) * hw + p;
          maxDiff = Math.max(maxDiff, Math.abs(r.images.data[k] - x.data[k]));
        }
        if (m === 0) expect(maxDiff).toBe(0);
        else expect(maxDiff).toBeGreaterThan(0.01);
      }
      expect(area / hw, `${r.kinds[i]} area`).toBeGreaterThan(0.002);
      expect(area / hw, `${r.kinds[i]} area`).toBeLessThan(0.5);
    }
    // The input is not modified.
    expect(x.data).toEqual(images(10).data);
  });

  it('is deterministic per seed, with a different defect per image', () => {
    const a = synthesizeDefects(x, { seed: 1, kinds: ['spot'] });
    const b = synthesizeDefects(x, { seed: 1, kinds: ['spot'] });
    const c = synthesizeDefects(x, { seed: 2, kinds: ['spot'] });
    expect(b.images.data).toEqual(a.images.data);
    expect(b.masks.data).toEqual(a.masks.data);
    expect(c.masks.data).not.toEqual(a.masks.data);
    expect(a.masks.data.subarray(0, 4096)).not.toEqual(a.masks.data.subarray(4096, 8192));
  });

  it('uses donors for cut-paste and refuses bad input by name', () => {
    const donors = images(2, 64, 9);
    const r = synthesizeDefects(images(1), { seed: 0, kinds: ['cutpaste'], donors });
    expect(r.masks.data.some((m) => m === 1)).toBe(true);
    expect(() => synthesizeDefects(images(1), { seed: 0, kinds: ['cutpaste'] })).toThrow(/need a second image/);
    expect(() => synthesizeDefects(images(2), { seed: 0, kinds: ['crack' as never] })).toThrow(/unknown defect kind "crack"/);
    expect(() => synthesizeDefects(tensor(new Float32Array(64), [1, 1, 8, 8]), { seed: 0 })).toThrow(/\[N, 3, H, W\]/);
    expect(() => synthesizeDefects(images(2), { seed: 0, donors: images(1, 32) })).toThrow(/donors must be \[M, 3, 64, 64\]/);
  });
});
