import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { HostTensor } from '@diad/core';
import { DiadDenoiser } from '../src/denoiser.js';
import { useBackend } from './backend.js';
import { microConfig } from './micro.js';

const dir = mkdtempSync(join(tmpdir(), 'sgd-train-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => useBackend());

/** Random values everywhere (no zero-initialised parameter), so every trainable one gets a gradient. */
async function _perturbed(seed: number): Promise<DiadDenoiser> {
  const d = await DiadDenoiser.create(microConfig(), seed);
  let i = 0;
  for (const v of d.store.variables()) v.assign(tf.tidy(() => tf.add(v, tf.randomNormal(v.shape, 0, 0.05, 'float32', seed * 1000 + i++))));
  return d;
}

const same = (a: HostTensor, b: HostTensor) => a.data.every((v, i) => Object.is(v, b.data[i]));

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
