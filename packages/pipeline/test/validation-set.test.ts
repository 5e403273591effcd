/** The validation set's defective copies: copy 0 equals a one-copy set, more copies add other kinds and seeds. */
import { describe, expect, it } from 'vitest';
import { Rng, mask, tensor } from '@diad/core';
import type { Sample } from '@diad/datasets';
import { validationSet, type Decoded } from '../src/index.js';

function decoded(classes: string[], size = 32): Decoded {
  const rng = new Rng(11);
  const n = classes.length;
  const data = new Float32Array(n * 3 * size * size).map(() => rng.normal());
  const samples = classes.map(
    (c, i) =>
      ({
        className: c,
        split: 'train',
        label: 0,
        defect: 'good',
        imagePath: `/data/${c}/${i}.png`,
        maskPath: null,
        format: 'mvtec',
        root: '/data',
      }) as unknown as Sample,
  );
  return { samples, images: tensor(data, [n, 3, size, size], 'NCHW'), masks: mask(new Uint8Array(n * size * size), [n, 1, size, size]), skipped: [] };
}

describe('validationSet', () => {
  const val = decoded(['a', 'a', 'b', 'b', 'b']);

  it('copy 0 is the one-copy set; copies add other kinds and seeds; classes follow the normal image', () => {
    const one = validationSet(val, 4);
    const three = validationSet(val, 4, { copies: 3 });
    const hw = 32 * 32;
    expect(three.defective.shape).toEqual([15, 3, 32, 32]);
    expect(three.masks.shape).toEqual([15, 1, 32, 32]);
    expect(three.defective.data.subarray(0, 5 * 3 * hw)).toEqual(one.defective.data);
    expect(three.masks.data.subarray(0, 5 * hw)).toEqual(one.masks.data);
    expect(three.defectiveClasses).toEqual(['a', 'a', 'b', 'b', 'b', 'a', 'a', 'b', 'b', 'b', 'a', 'a', 'b', 'b', 'b']);
    // Image i's copies get successive kinds.
    expect(three.kinds.slice(0, 5)).toEqual(['cutpaste', 'scratch', 'spot', 'texture', 'missing']);
    expect(three.kinds.slice(5, 10)).toEqual(['scratch', 'spot', 'texture', 'missing', 'cutpaste']);
    expect(three.kinds.slice(10, 15)).toEqual(['spot', 'texture', 'missing', 'cutpaste', 'scratch']);
    expect(three.masks.data.subarray(5 * hw, 6 * hw)).not.toEqual(three.masks.data.subarray(0, hw));
    expect(three.normal).toBe(val.images);
  });

  it('passes scale and contrast to the synthesiser', () => {
    const area = (s: ReturnType<typeof validationSet>) => s.masks.data.reduce((a, v) => a + v, 0);
    const full = validationSet(val, 4, { copies: 2, scale: 1, contrast: 1 });
    const small = validationSet(val, 4, { copies: 2, scale: 0.5, contrast: 1 });
    expect(area(small)).toBeLessThan(area(full) * 0.5);
    expect(() => validationSet(val, 4, { copies: 1, scale: 1, contrast: 2 })).toThrow(/contrast must be in \(0, 1\]/);
  });
});
