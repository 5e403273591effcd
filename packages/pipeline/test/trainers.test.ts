/**
 * The tfjs stage trainer on the SG stage's problem (the `ci` preset's denoiser): only the official
 * trainable groups change, frozen weights stay bit-identical; a checkpoint in core's one training
 * format resumes exactly; a non-finite loss changes nothing.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { DiffusionSchedule, readSafetensors, Rng, tensor, writeSafetensors, type HostTensor } from '@diad/core';
import { initTfjs } from '@diad/core/tfjs';
import { DiadDenoiser, parseDiadConfig, trainableFilter } from '@diad/sg-diffusion';
import { denoiserProblem, noisedBatch, resolveConfig, tfjsStageTrainer, type StageBatch } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'diad-trainers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cfg = resolveConfig('ci', { roots: ['/d'] });
const dCfg = parseDiadConfig(cfg.models.diad, 'ci');
const hw = dCfg.unet.image_size!;
const sc = { ...cfg.stages.sg, batchSize: 2 };
const trainable = trainableFilter('official');

/** A ci denoiser with random values everywhere (zero convs too), so every trainable tensor gets a gradient. */
async function perturbed(seed: number): Promise<DiadDenoiser> {
  await initTfjs();
  const d = await DiadDenoiser.create(dCfg, seed);
  let i = 0;
  for (const v of d.store.variables()) v.assign(tf.tidy(() => tf.add(v, tf.randomNormal(v.shape, 0, 0.05, 'float32', seed * 1000 + i++))));
  return d;
}

function batchOf(seed: number, poison = false): StageBatch {
  const r = new Rng(seed);
  const latents = tensor(r.normals(2 * 4 * hw * hw), [2, 4, hw, hw], 'NCHW');
  const hint = tensor(r.normals(2 * 3 * 64 * hw * hw), [2, 3, 8 * hw, 8 * hw], 'NCHW');
  const b: StageBatch = { ...noisedBatch(r, latents, new DiffusionSchedule(), dCfg.unet.model_channels), hint };
  if (poison) b.noise = tensor(new Float32Array(b.noise.data.length).fill(NaN), b.noise.shape, 'NCHW');
  return b;
}

const same = (a: HostTensor, b: HostTensor) => a.data.every((v, i) => Object.is(v, b.data[i]));
const params = (ckpt: Record<string, HostTensor>) => Object.fromEntries(Object.entries(ckpt).filter(([n]) => !n.startsWith('optimizer.')));

describe('tfjs stage trainer (SG stage)', () => {
  it('updates only the official trainable groups; resumes exactly from its checkpoint; a NaN loss changes nothing', async () => {
    const d = await perturbed(3);
    const before = await d.store.toHost();
    const batches = [batchOf(1), batchOf(2), batchOf(3)];
    const t = tfjsStageTrainer(denoiserProblem('sg', sc, dCfg, d, trainable, (s) => batches[s], hw, null));
    await t.step(0);
    await t.step(1);
    const ckpt = (await t.state()) as Record<string, HostTensor>;
    expect(ckpt['optimizer.step'].data[0]).toBe(2);
    let frozen = 0;
    let changed = 0;
    for (const [n, v] of Object.entries(before)) {
      if (trainable(n)) changed += same(v, ckpt[n]) ? 0 : 1;
      else {
        frozen++;
        expect(same(v, ckpt[n]), `${n} is frozen`).toBe(true);
      }
    }
    expect(frozen).toBeGreaterThan(0);
    // Nearly every trainable tensor moves; the few that do not reach the loss get no gradient, and AdamW skips them (as torch does).
    const total = Object.keys(before).filter(trainable).length;
    console.log(`[trainers] ${changed} of ${total} trainable tensors changed, ${frozen} frozen unchanged`);
    expect(changed).toBeGreaterThan(0.9 * total);

    // Resume: a fresh denoiser loads the checkpoint file and takes the same third step.
    const path = join(dir, 'sg.safetensors');
    await writeSafetensors(path, await t.state());
    const d2 = await perturbed(7);
    const t2 = tfjsStageTrainer(denoiserProblem('sg', sc, dCfg, d2, trainable, (s) => batches[s], hw, null));
    await t2.load(await readSafetensors(path));
    const [l1, l2] = [await t.step(2), await t2.step(2)];
    expect(l2).toBe(l1);
    const [a, b] = [params((await t.state()) as Record<string, HostTensor>), params((await t2.state()) as Record<string, HostTensor>)];
    for (const n of Object.keys(a)) expect(same(a[n], b[n]), n).toBe(true);

    // A non-finite loss is reported as NaN and nothing is updated.
    const t3 = tfjsStageTrainer(denoiserProblem('sg', sc, dCfg, await perturbed(5), trainable, () => batchOf(4, true), hw, null));
    const start = params((await t3.state()) as Record<string, HostTensor>);
    expect(await t3.step(0)).toBeNaN();
    const after = params((await t3.state()) as Record<string, HostTensor>);
    for (const n of Object.keys(start)) expect(same(start[n], after[n]), n).toBe(true);
    for (const x of [t, t2, t3]) x.dispose();
  }, 120_000);
});

describe('gradient accumulation (stages.*.accumulate)', () => {
  it('one step takes `accumulate` consecutive batches of the stream: its loss is their mean, its images their sum', async () => {
    const batches = [batchOf(4), batchOf(5), batchOf(6)];
    const single = async (i: number) => {
      const t = tfjsStageTrainer(denoiserProblem('sg', sc, dCfg, await perturbed(3), trainable, () => batches[i], hw, null));
      const loss = await t.step(0);
      t.dispose();
      return loss;
    };
    const [l0, l1] = [await single(0), await single(1)];
    const t = tfjsStageTrainer(denoiserProblem('sg', { ...sc, accumulate: 2 }, dCfg, await perturbed(3), trainable, (s) => batches[s], hw, null));
    expect(t.batchSize).toBe(2 * sc.batchSize);
    expect(Math.abs((await t.step(0)) - (l0 + l1) / 2)).toBeLessThan(1e-6 * Math.abs(l0 + l1));
    t.dispose();
  });
});
