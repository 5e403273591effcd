import { describe, expect, it } from 'vitest';
import { ItemNoise, Rng, ddimLoop, noiseTimestep, tensor, type HostTensor } from '../src/index.js';
import { DiffusionSchedule } from '../src/schedule.js';

describe('DiffusionSchedule', () => {
  const s = new DiffusionSchedule();

  it('scaled-linear betas: linspace of square roots from 0.00085 to 0.012', () => {
    expect(s.betas[0]).toBeCloseTo(0.00085, 9);
    expect(s.betas[999]).toBeCloseTo(0.012, 9);
    const mid = ((Math.sqrt(0.00085) + Math.sqrt(0.012)) / 2) ** 2;
    expect((s.betas[499] + s.betas[500]) / 2).toBeCloseTo(mid, 6);
    expect(s.alphasCumprod[0]).toBeCloseTo(1 - 0.00085, 7); // float32 values
    expect(s.alphasCumprod[1]).toBeCloseTo((1 - s.betas[0]) * (1 - s.betas[1]), 7);
  });

  it('DDIM timesteps: uniform with the +1 shift, alphas_prev starts at alphas_cumprod[0], sigmas from eta', () => {
    const d = s.ddim(10, 0);
    expect(d.timesteps).toEqual([1, 101, 201, 301, 401, 501, 601, 701, 801, 901]);
    expect(d.alphasPrev[0]).toBe(s.alphasCumprod[0]);
    expect(d.alphasPrev[3]).toBe(s.alphasCumprod[201]);
    expect(d.sigmas.every((x) => x === 0)).toBe(true);
    const e = s.ddim(10, 1);
    const [a, ap] = [e.alphas[5], e.alphasPrev[5]];
    expect(e.sigmas[5]).toBeCloseTo(Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap)), 12);
    expect(() => s.ddim(0)).toThrow(/steps/);
  });

  it('visit orders: official visits every DDIM timestep whatever t_start, partial starts at the last one <= t_start', () => {
    const d = s.ddim(10);
    const ts = (tStart: number, sch: 'official' | 'partial') => s.visitOrder(d, tStart, sch).map((i) => d.timesteps[i]);
    expect(ts(999, 'official')).toEqual([901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    expect(ts(300, 'official')).toEqual(ts(999, 'official'));
    expect(ts(5, 'official')).toEqual([401, 301, 201, 101, 1]); // int(min(5/10, 1) * 10) = 5
    expect(ts(999, 'partial')).toEqual(ts(999, 'official'));
    expect(ts(500, 'partial')).toEqual([401, 301, 201, 101, 1]);
    expect(ts(501, 'partial')).toEqual([501, 401, 301, 201, 101, 1]);
    expect(ts(0, 'partial')).toEqual([]);
    expect(() => s.visitOrder(d, 1000, 'official')).toThrow(/timestep 1000/);
  });

  it('q_sample then a DDIM step with the true noise recovers x0 (eta 0)', () => {
    const r = new Rng(3);
    const x0 = tensor(r.normals(32), [2, 4, 2, 2]);
    const eps = tensor(r.normals(32), [2, 4, 2, 2]);
    const d = s.ddim(10);
    const xt = s.qSample(x0, d.timesteps[7], eps);
    const { prev, predX0 } = s.ddimStep(d, 7, xt, eps);
    for (let i = 0; i < 32; i++) expect(predX0.data[i]).toBeCloseTo(x0.data[i], 4);
    // x_prev is x0 noised with the same eps to the previous DDIM timestep.
    const want = s.qSample(x0, d.timesteps[6], eps);
    for (let i = 0; i < 32; i++) expect(prev.data[i]).toBeCloseTo(want.data[i], 4);
    expect(() => s.qSample(x0, [1], eps)).toThrow(/timesteps for a batch of 2/);
  });

  it('partial DDIM noises to its first visited timestep: an oracle eps gives back the latent at every start', async () => {
    const d = s.ddim(10);
    expect(noiseTimestep(d, s.visitOrder(d, 300, 'partial'), { tStart: 300, schedule: 'partial' })).toBe(201);
    expect(noiseTimestep(d, s.visitOrder(d, 50, 'partial'), { tStart: 50, schedule: 'partial' })).toBe(1);
    expect(noiseTimestep(d, s.visitOrder(d, 999, 'official'), { tStart: 999, schedule: 'official' })).toBe(999);
    const z = tensor(new Rng(8).normals(2 * 4 * 3 * 3), [2, 4, 3, 3], 'NCHW');
    const seed = 5;
    // The noise the loop draws: ItemNoise's first draw with the loop's seed, the same for each image.
    const noise = new ItemNoise(seed, 2, 36).normals(72);
    const oracle = async (x: HostTensor) => tensor(noise.slice(), x.shape, x.layout);
    // DDIM's last step goes to alphas_prev[0] = alphas_cumprod[0], not 1: the result is z noised to t=0 with the same noise.
    const a0 = s.alphasCumprod[0];
    for (const tStart of [50, 300, 650, 999]) {
      const out = await ddimLoop(s, z, { tStart, steps: 10, eta: 0, schedule: 'partial', seed }, oracle);
      for (let i = 0; i < z.data.length; i++)
        expect(out.data[i], `t=${tStart} value ${i}`).toBeCloseTo(Math.sqrt(a0) * z.data[i] + Math.sqrt(1 - a0) * noise[i], 4);
    }
  });
});
