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

  it('scale shrinks the regions and contrast the change, masks still exact', () => {
    const hw = 64 * 64;
    const area = (m: Uint8Array, i: number) => m.subarray(i * hw, (i + 1) * hw).reduce((a, v) => a + v, 0);
    const full = synthesizeDefects(x, { seed: 5 });
    const small = synthesizeDefects(x, { seed: 5, scale: 0.5 });
    // Blob radii halve: areas fall to about a quarter (scratches: half the length); never to nothing.
    let fullArea = 0;
    let smallArea = 0;
    for (let i = 0; i < 10; i++) {
      expect(area(small.masks.data, i), `${small.kinds[i]} image ${i}`).toBeGreaterThan(0);
      fullArea += area(full.masks.data, i);
      smallArea += area(small.masks.data, i);
    }
    expect(smallArea / fullArea).toBeLessThan(0.45);
    expect(smallArea / fullArea).toBeGreaterThan(0.1);
    // Same regions at half strength: each masked pixel moves half as far (or by the visible minimum).
    const faint = synthesizeDefects(x, { seed: 5, kinds: ['spot'], contrast: 0.5 });
    const strong = synthesizeDefects(x, { seed: 5, kinds: ['spot'] });
    expect(faint.masks.data).toEqual(strong.masks.data);
    let checked = 0;
    for (let k = 0; k < x.data.length; k++) {
      const d = strong.images.data[k] - x.data[k];
      if (Math.abs(d) < 0.2) continue; // pixels the visible-minimum rule pushed
      expect(faint.images.data[k] - x.data[k]).toBeCloseTo(d / 2, 4);
      checked++;
    }
    expect(checked).toBeGreaterThan(1000);
    expect(() => synthesizeDefects(x, { seed: 0, scale: 0 })).toThrow(/scale must be a positive number, got 0/);
    expect(() => synthesizeDefects(x, { seed: 0, contrast: 1.5 })).toThrow(/contrast must be in \(0, 1\], got 1.5/);
  });
});
