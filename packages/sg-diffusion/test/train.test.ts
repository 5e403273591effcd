import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { tensor, type HostTensor } from '@diad/core';
import { DiadDenoiser } from '../src/denoiser.js';
import { DiadTrainer } from '../src/train.js';
import { useBackend } from './backend.js';
import { microBatch, microConfig } from './micro.js';

const dir = mkdtempSync(join(tmpdir(), 'sgd-train-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => useBackend());

/** Random values everywhere (no zero-initialised parameter), so every trainable one gets a gradient. */
async function perturbed(seed: number): Promise<DiadDenoiser> {
  const d = await DiadDenoiser.create(microConfig(), seed);
  let i = 0;
  for (const v of d.store.variables()) v.assign(tf.tidy(() => tf.add(v, tf.randomNormal(v.shape, 0, 0.05, 'float32', seed * 1000 + i++))));
  return d;
}

const same = (a: HostTensor, b: HostTensor) => a.data.every((v, i) => Object.is(v, b.data[i]));

describe('DiadTrainer', () => {
  it('updates only the official trainable groups: frozen weights bit-identical, trainable ones changed', async () => {
    const d = await perturbed(1);
    const trainer = new DiadTrainer(d, { optimizer: { lr: 1e-3 } });
    const names = new Set(trainer.trainableNames);
    const all = d.store.names();
    expect(all.filter((n) => n.startsWith('control_model.')).every((n) => names.has(n))).toBe(true);
    expect(names.has('model.diffusion_model.output_blocks.0.0.in_layers.2.weight')).toBe(true);
    expect(names.has('model.diffusion_model.out.2.weight')).toBe(true);
    expect(names.has('learned_context.weight')).toBe(true);
    const frozen = all.filter((n) => !names.has(n));
    expect(frozen.every((n) => /^model\.diffusion_model\.(time_embed|input_blocks|middle_block)\./.test(n))).toBe(true);
    expect(frozen.length).toBeGreaterThan(50);
    const before = await d.store.toHost();
    const r = await trainer.trainStep([microBatch(2, 7)]);
    expect(Number.isFinite(r.loss)).toBe(true);
    const after = await d.store.toHost();
    expect(frozen.filter((n) => !same(before[n], after[n]))).toEqual([]);
    // With only_mid_control (official) the zero convs 0-5 feed no skip, so they get no gradient and,
    // as PyTorch skips parameters whose grad is None, stay unchanged; every other trainable one moves.
    const unused = Array.from({ length: 6 }, (_, i) => [`control_model.zero_convs.${i}.0.weight`, `control_model.zero_convs.${i}.0.bias`]).flat();
    expect([...names].filter((n) => same(before[n], after[n]))).toEqual(unused);
    trainer.dispose();
    d.dispose();
  });

  it('NaN guard: a non-finite loss stops with a clear error and leaves the weights alone', async () => {
    const d = await perturbed(2);
    const trainer = new DiadTrainer(d, { optimizer: { lr: 1e-3 } });
    const b = microBatch(1, 3);
    const bad = new Float32Array(b.latents.data);
    bad[5] = NaN;
    const before = await d.store.toHost();
    await expect(trainer.trainStep([{ latents: tensor(bad, b.latents.shape, 'NCHW'), hint: b.hint }])).rejects.toThrow(/non-finite/);
    const after = await d.store.toHost();
    expect(Object.keys(before).filter((n) => !same(before[n], after[n]))).toEqual([]);
    trainer.dispose();
    d.dispose();
  });

  it('checkpoint save and resume continue the run exactly; the weights load on their own', async () => {
    const batches = [microBatch(2, 11), microBatch(2, 12)];
    const a = await perturbed(3);
    const ta = new DiadTrainer(a, { optimizer: { lr: 1e-3 }, seed: 5 });
    await ta.trainStep([batches[0]]);
    const ckpt = join(dir, 'ckpt.safetensors');
    await ta.save(ckpt);
    const r2 = await ta.trainStep([batches[1]]);
    const want = await a.store.toHost();

    const b = await perturbed(4);
    const tb = new DiadTrainer(b, { optimizer: { lr: 1e-3 }, seed: 5 });
    await tb.resume(ckpt);
    expect(tb.step).toBe(1);
    const r2b = await tb.trainStep([batches[1]]);
    expect(r2b.loss).toBe(r2.loss);
    const got = await b.store.toHost();
    expect(Object.keys(want).filter((n) => !same(want[n], got[n]))).toEqual([]);

    const loaded = await DiadDenoiser.load(microConfig(), ckpt);
    const x = microBatch(1, 20);
    const eps = await loaded.predictEps(x.latents, x.hint, [500]);
    expect(eps.shape).toEqual([1, 4, 8, 8]);
    await expect(DiadDenoiser.load({ ...microConfig(), hint_widths: [4, 4, 8, 8, 8, 8, 32] }, ckpt)).rejects.toThrow(/mis-shaped.*input_hint_block/s);
    for (const x of [ta, tb]) x.dispose();
    for (const x of [a, b, loaded]) x.dispose();
  });

  it('gradient accumulation: two identical micro-batches give the update of one', async () => {
    const a = await perturbed(6);
    const b = await perturbed(6);
    const ta = new DiadTrainer(a, { optimizer: { lr: 1e-3 } });
    const tb = new DiadTrainer(b, { optimizer: { lr: 1e-3 } });
    const batch = microBatch(1, 30);
    const noise = microBatch(1, 31).latents;
    await ta.trainer.trainStep([ta.lossFn(batch, [400], noise)]);
    await tb.trainer.trainStep([tb.lossFn(batch, [400], noise), tb.lossFn(batch, [400], noise)]);
    const wa = await a.store.toHost('model.diffusion_model.out.');
    const wb = await b.store.toHost('model.diffusion_model.out.');
    for (const n of Object.keys(wa)) {
      const diff = wa[n].data.reduce((m, v, i) => Math.max(m, Math.abs(v - wb[n].data[i])), 0);
      expect(diff, n).toBeLessThan(1e-6);
    }
    for (const x of [ta, tb]) x.dispose();
    for (const x of [a, b]) x.dispose();
  });

  it('fits a fixed (t, noise) micro-batch: loss falls to under half in 12 updates', async () => {
    const d = await DiadDenoiser.create(microConfig(), 8);
    const t = new DiadTrainer(d, { optimizer: { lr: 3e-3 }, groups: 'all' });
    const batch = microBatch(2, 40);
    const noise = microBatch(2, 41).latents;
    const losses: number[] = [];
    for (let i = 0; i < 12; i++) losses.push((await t.trainer.trainStep([t.lossFn(batch, [200, 700], noise)])).loss);
    console.log('micro fit losses', losses.map((l) => l.toFixed(4)).join(' '));
    expect(losses[11]).toBeLessThan(0.5 * losses[0]);
    t.dispose();
    d.dispose();
  });
});

describe('DiadDenoiser.create', () => {
  it('starts the SG network encoder as a copy of the UNet encoder (ControlNet recipe); zero convs zero', async () => {
    const d = await DiadDenoiser.create(microConfig(), 9);
    const h = await d.store.toHost();
    for (const n of ['input_blocks.1.0.in_layers.2.weight', 'middle_block.1.proj_in.weight', 'time_embed.0.bias']) {
      expect(same(h[`control_model.${n}`], h[`model.diffusion_model.${n}`]), n).toBe(true);
    }
    expect(h['control_model.zero_convs.3.0.weight'].data.every((v) => v === 0)).toBe(true);
    expect(h['model.diffusion_model.output_blocks.0.0.in_layers.2.weight'].data.some((v) => v !== 0)).toBe(true);
    d.dispose();
  });
});
