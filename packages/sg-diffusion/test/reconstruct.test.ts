import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { DdimReconstructor, ddimVisitedSteps, DiffusionSchedule, Rng, tensor, writeSafetensors } from '@diad/core';
import { parseDiadConfig, preset } from '../src/config.js';
import { DiadDenoiser } from '../src/denoiser.js';
import { createReconstructor, reconstructors } from '../src/reconstructor.js';
import { sgnParamSpec } from '../src/spec.js';
import { useBackend } from './backend.js';
import { microBatch, microConfig } from './micro.js';

const dir = mkdtempSync(join(tmpdir(), 'sgd-rec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => useBackend());

describe('DdimReconstructor', () => {
  it('with a fresh model (zero-initialised out conv, eps = 0) DDIM scales x_T by sqrt(ac[0] / ac[first step])', async () => {
    const d = await DiadDenoiser.create(microConfig(), 1);
    const rec = new DdimReconstructor(d, { tStart: 999, steps: 10, eta: 0, schedule: 'official' });
    const b = microBatch(2, 4);
    const out = await rec.reconstruct(b.latents, b.hint, { seed: 9 });
    const s = rec.schedule;
    // Each item's noise is its own Rng(9) stream.
    const per = b.latents.data.length / 2;
    const noise = new Float32Array(2 * per);
    noise.set(new Rng(9).normals(per), 0);
    noise.set(new Rng(9).normals(per), per);
    const xT = s.qSample(b.latents, 999, tensor(noise, b.latents.shape));
    const k = Math.sqrt(s.alphasCumprod[0] / s.alphasCumprod[901]);
    for (let i = 0; i < out.data.length; i += 17) expect(out.data[i]).toBeCloseTo(xT.data[i] * k, 3);
    d.dispose();
  });

  it("an image's reconstruction does not depend on its batch or its place in it (eta > 0 too)", async () => {
    const d = await DiadDenoiser.create(microConfig(), 4);
    for (const v of d.store.variables()) v.assign(tf.tidy(() => tf.add(v, tf.randomNormal(v.shape, 0, 0.05, 'float32', 5))));
    const rec = new DdimReconstructor(d, { tStart: 999, steps: 4, eta: 0.5, schedule: 'official' });
    const b = microBatch(2, 6);
    const o = { seed: 3 };
    const per = b.latents.data.length / 2;
    const perHint = b.hint.data.length / 2;
    const item = (t: typeof b.latents, i: number, k: number) => tensor(t.data.slice(i * k, (i + 1) * k), [1, ...t.shape.slice(1)], t.layout);
    const swap = (t: typeof b.latents, k: number) => {
      const out = new Float32Array(2 * k);
      out.set(t.data.subarray(k, 2 * k), 0);
      out.set(t.data.subarray(0, k), k);
      return tensor(out, t.shape, t.layout);
    };
    const both = await rec.reconstruct(b.latents, b.hint, o);
    const swapped = await rec.reconstruct(swap(b.latents, per), swap(b.hint, perHint), o);
    const alone = await rec.reconstruct(item(b.latents, 1, per), item(b.hint, 1, perHint), o);
    expect([...swapped.data.subarray(0, per)]).toEqual([...both.data.subarray(per)]);
    expect([...alone.data]).toEqual([...both.data.subarray(per)]);
    d.dispose();
  });

  it('is deterministic per seed; partial and official schedules differ below the top timestep', async () => {
    const d = await DiadDenoiser.create(microConfig(), 2);
    for (const v of d.store.variables()) v.assign(tf.tidy(() => tf.add(v, tf.randomNormal(v.shape, 0, 0.05, 'float32', 3))));
    const ddim = { tStart: 500, steps: 5, eta: 0, schedule: 'official' as const };
    const rec = createReconstructor({ kind: 'ddim', ...ddim }, d);
    const b = microBatch(1, 5);
    const o = { seed: 1 };
    const a1 = await rec.reconstruct(b.latents, b.hint, o);
    const a2 = await rec.reconstruct(b.latents, b.hint, o);
    const p = await new DdimReconstructor(d, { ...ddim, schedule: 'partial' }).reconstruct(b.latents, b.hint, o);
    expect([...a1.data]).toEqual([...a2.data]);
    expect([...p.data]).not.toEqual([...a1.data]);
    await expect(rec.reconstruct(b.latents, microBatch(1, 5).latents, o)).rejects.toThrow(/hint must be \[N, 3, H, W\]/);
    const big = tensor(new Float32Array(3 * 128 * 128), [1, 3, 128, 128], 'NCHW');
    await expect(rec.reconstruct(b.latents, big, o)).rejects.toThrow(/8x the latent size/);
    d.dispose();
  });

  it('samplers come from the registry by kind: DDIM options are checked, an unknown kind lists the registered ones, a new one is one register call', async () => {
    const d = await DiadDenoiser.create(microConfig(), 6);
    const b = microBatch(1, 7);
    expect(() => createReconstructor({ kind: 'ddim', tStart: 0, steps: 5, eta: 0, schedule: 'official' }, d, 'inference.reconstructor')).toThrow(
      /inference\.reconstructor: invalid DDIM options: tStart/,
    );
    // 3 steps: the official spacing (every 333, +1) would reach timestep 1000; refused when the sampler is made.
    expect(() => createReconstructor({ kind: 'ddim', tStart: 500, steps: 3, eta: 0, schedule: 'partial' }, d, 'inference.reconstructor')).toThrow(
      /inference\.reconstructor: DDIM with 3 steps: .*reaches timestep 1000.*divides 1000/,
    );
    expect(ddimVisitedSteps({ tStart: 999, steps: 10, eta: 0, schedule: 'partial' })).toBe(10);
    expect(ddimVisitedSteps({ tStart: 200, steps: 5, eta: 0, schedule: 'partial' })).toBe(1); // timesteps 1, 201, ...: only t=1 is <= 200
    expect(ddimVisitedSteps({ tStart: 200, steps: 5, eta: 0, schedule: 'official' })).toBe(5);
    expect(() => createReconstructor({ kind: 'dpm', steps: 5 }, d, 'inference.reconstructor')).toThrow(
      /inference\.reconstructor\.kind: unknown reconstructor "dpm"; registered: ddim/,
    );
    // A one-step "sampler": x0 from a single eps-prediction at tStart without noise (x0 = (x - sqrt(1-ac) eps) / sqrt(ac)).
    reconstructors.register('one-step-test', (denoiser, spec, _source, schedule) => ({
      async reconstruct(latents, hint) {
        const t = Number(spec.t);
        const g = await denoiser.guide(hint);
        const eps = await g.eps(latents, t);
        g.dispose();
        const ac = schedule.alphasCumprod[t];
        return tensor(
          latents.data.map((x, i) => (x - Math.sqrt(1 - ac) * eps.data[i]) / Math.sqrt(ac)),
          latents.shape,
          latents.layout,
        );
      },
    }));
    const out = await createReconstructor({ kind: 'one-step-test', t: 10 }, d).reconstruct(b.latents, b.hint, { seed: 0 });
    // A fresh model predicts eps = 0 (zero out conv): x0 = x / sqrt(ac[10]).
    const k = 1 / Math.sqrt(new DiffusionSchedule().alphasCumprod[10]);
    for (let i = 0; i < out.data.length; i += 13) expect(out.data[i]).toBeCloseTo(b.latents.data[i] * k, 5);
    d.dispose();
  });

  it('a constant context from a safetensors file (e.g. CLIP empty prompt); a wrong width is refused', async () => {
    const path = join(dir, 'ctx.safetensors');
    await writeSafetensors(path, { context: tensor(new Rng(1).normals(3 * 16), [1, 3, 16]) });
    const base = microConfig();
    const cfg = { ...base, context: { kind: 'file' as const, path, tensor: 'context' } };
    const d = await DiadDenoiser.create(cfg, 1);
    expect(d.store.has('learned_context.weight')).toBe(false);
    const ctx = d.context(2);
    expect(d.ops.shape(ctx)).toEqual([2, 3, 16]);
    ctx.dispose();
    d.dispose();
    await expect(DiadDenoiser.create({ ...cfg, unet: { ...base.unet, context_dim: 32 } }, 1)).rejects.toThrow(/need \[1, tokens, 32\]/);
    await expect(DiadDenoiser.create({ ...cfg, context: { kind: 'file', path, tensor: 'clip' } }, 1)).rejects.toThrow(/no tensor "clip"/);
  });
});

describe('configs', () => {
  it('presets parse; free JSON configs are validated with every bad field named', () => {
    expect(preset('tiny').unet.channel_mult).toEqual([1, 2, 2, 2]);
    expect(() => parseDiadConfig({ unet: { in_channels: 4 }, context: { kind: 'learned', tokens: 1 } }, 'my.json')).toThrow(
      /my\.json: invalid DiAD config[\s\S]*unet\.out_channels[\s\S]*unet\.model_channels/,
    );
    const c = microConfig();
    expect(() => parseDiadConfig({ ...c, unet: { ...c.unet, model_channels: 40 } })).toThrow(/not a multiple of 32/);
    expect(() =>
      sgnParamSpec({ unet: { ...c.unet, channel_mult: [1, 1, 1] }, hint_channels: 3, hint_widths: c.hint_widths, hint_downsample: 8, sff: true }),
    ).toThrow(/SFF block needs channel_mult of length 4/);
  });
});
