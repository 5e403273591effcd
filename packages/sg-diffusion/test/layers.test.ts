import { describe, expect, it } from 'vitest';
import { timestepEmbedding } from '../src/layers.js';

describe('timestepEmbedding', () => {
  it('timestep embedding: [cos(t f), sin(t f)], f_0 = 1', () => {
    const e = timestepEmbedding([0, 10], 4);
    expect([...e.data.slice(0, 4)]).toEqual([1, 1, 0, 0]);
    expect(e.data[4]).toBeCloseTo(Math.cos(10), 6);
    expect(e.data[5]).toBeCloseTo(Math.cos(10 * 0.01), 6); // f_1 = 10000^(-1/2)
    expect(e.data[7]).toBeCloseTo(Math.sin(10 * 0.01), 6);
  });
});
