import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors, tensor, type HostTensor } from '@diad/core';
import { initTfjs, TfjsOps } from '@diad/core/tfjs';
import { parseAutoencoderConfig } from '../src/config.js';
import { posterior } from '../src/distribution.js';
import { decodeLatent, encodeMoments } from '../src/model.js';
import { createAutoencoderParams, loadAutoencoderParams } from '../src/tfjs.js';
import { AutoencoderTrainer, featureDistance } from '../src/train.js';
import { autoencoderLoss } from '../src/loss.js';
import { recordAutoencoderTraining } from '../src/train-graph.js';
import { OrtTrainer } from '@diad/core/ort';
import { Rng } from '@diad/core';

/** f=2, 16 px: the smallest AutoencoderKL that still has every block kind. */
const cfg = parseAutoencoderConfig({
  ddconfig: { double_z: true, z_channels: 4, resolution: 16, in_channels: 3, out_ch: 3, ch: 32, ch_mult: [1, 1], num_res_blocks: 1, attn_resolutions: [8], dropout: 0 },
  embed_dim: 4,
});

/** Four smooth synthetic images (ramps and a bright square), values roughly in [-2, 2]. */
function images(): HostTensor<'float32'> {
  const n = 4, s = 16;
  const d = new Float32Array(n * 3 * s * s);
  for (let b = 0; b < n; b++)
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < s; y++)
        for (let x = 0; x < s; x++) {
          const ramp = ((b % 2 ? x : y) / (s - 1)) * 2 - 1;
          const square = x >= 4 + b && x < 9 + b && y >= 5 && y < 10 ? 1.5 : 0;
          d[((b * 3 + c) * s + y) * s + x] = ramp * (c + 1) * 0.5 + square;
        }
  return tensor(d, [n, 3, s, s], 'NCHW');
}

let dir: string;
beforeAll(async () => {
  const info = await initTfjs({ engine: 'wasm' });
  expect(info.gradients).not.toBeNull();
  dir = await mkdtemp(join(tmpdir(), 'diad-ae-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('autoencoder objective', () => {
  it('equals the official formula: sum|x - dec(mean)|/N + w * 0.5 * sum(mean^2 + var - 1 - logvar)/N', async () => {
    const store = createAutoencoderParams(cfg, 3);
    try {
      const ops = new TfjsOps(store);
      const x = images();
      const [m, lv, rec, loss] = tf.tidy(() => {
        const xi = ops.input(x);
        const p = posterior(ops, encodeMoments(ops, cfg, xi));
        const t = autoencoderLoss(ops, cfg, xi, null, { klWeight: 0.01, samplePosterior: false });
        return [p.mean, p.logvar, decodeLatent(ops, cfg, p.mean), t.loss];
      });
      const [mh, lvh, rh] = await Promise.all([ops.read(m), ops.read(lv), ops.read(rec)]);
      const got = (await loss.data())[0];
      tf.dispose([m, lv, rec, loss]);
      let abs = 0, kl = 0;
      for (let i = 0; i < x.data.length; i++) abs += Math.abs(x.data[i] - rh.data[i]);
      for (let i = 0; i < mh.data.length; i++) kl += 0.5 * (mh.data[i] ** 2 + Math.exp(lvh.data[i]) - 1 - lvh.data[i]);
      const want = abs / 4 + 0.01 * (kl / 4);
      expect(got).toBeCloseTo(want, 1);
      expect(Math.abs(got - want) / want).toBeLessThan(1e-5);
    } finally {
      store.dispose();
    }
  });

  it('the onnxruntime training graph gives the loss and gradients of tf.variableGrads on the same objective', async () => {
    const store = createAutoencoderParams(cfg, 5);
    try {
      const ops = new TfjsOps(store);
      const x = images();
      const noise = tensor(new Rng(2).normals(4 * 4 * 8 * 8), [4, 4, 8, 8], 'NCHW');
      const names = store.names();
      const { loss: wantLoss, grads: want } = await store.gradients(() => true, () => autoencoderLoss(ops, cfg, ops.input(x), ops.input(noise), { klWeight: 0.01 }).loss as tf.Scalar);
      const graph = recordAutoencoderTraining(cfg, await store.toHost(), { batch: 4, height: 16, width: 16, klWeight: 0.01 });
      expect(graph.withoutGradient).toEqual([]);
      expect(graph.batchInputs).toEqual(['images', 'noise']);
      const trainer = await OrtTrainer.open(graph, await store.toHost(), { optimizer: { lr: 1e-3 } });
      try {
        const got = await trainer.lossAndGrads({ images: x, noise });
        expect(Math.abs(got.loss - wantLoss) / wantLoss).toBeLessThan(1e-5);
        // Biases right before a one-channel-per-group GroupNorm have an exact gradient of 0 (rounding
        // noise on both engines): errors are relative to max(tensor scale, 1e-3 * largest gradient).
        const G = Math.max(...names.map((n) => want[n].reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
        for (const n of names) {
          let err = 0, scale = 1e-3 * G;
          for (let i = 0; i < want[n].length; i++) {
            err = Math.max(err, Math.abs(got.grads[n][i] - want[n][i]));
            scale = Math.max(scale, Math.abs(want[n][i]));
          }
          expect(err / scale, n).toBeLessThan(1e-3);
        }
      } finally {
        await trainer.release();
      }
    } finally {
      store.dispose();
    }
  });

  it('featureDistance is 0 for equal inputs and matches a hand computation', () => {
    // identity "features": per pixel, unit-normalised channel vectors.
    const fn = featureDistance((x) => [x]);
    const a = tf.tensor4d([3, 4, 0, 1], [1, 1, 2, 2]); // pixels (3,4) and (0,1), NHWC
    const b = tf.tensor4d([4, 3, 0, 2], [1, 1, 2, 2]); // (4,3) and (0,2)
    const same = fn(a, a).dataSync()[0];
    // pixel 1: |(0.6,0.8)-(0.8,0.6)|^2 = 0.08; pixel 2: equal directions, 0. Mean 0.04.
    const d = fn(a, b).dataSync()[0];
    tf.dispose([a, b]);
    expect(same).toBe(0);
    expect(d).toBeCloseTo(0.04, 6);
  });
});

describe('AutoencoderTrainer', () => {
  it('reduces the reconstruction error of a tiny model on synthetic images, with a perceptual term', async () => {
    const store = createAutoencoderParams(cfg, 1);
    // A fixed random 3x3 conv + ReLU as the "backbone" of the perceptual term.
    const filt = tf.randomNormal([3, 3, 3, 8], 0, 0.5, 'float32', 5);
    const trainer = new AutoencoderTrainer(store, cfg, {
      optimizer: { lr: 2e-3 }, seed: 1,
      perceptual: { fn: featureDistance((x) => [tf.relu(tf.conv2d(x, filt as tf.Tensor4D, 1, 'same'))]), weight: 0.1 },
    });
    try {
      const x = images();
      const log: { l1: number; kl: number; p: number; loss: number }[] = [];
      for (let i = 0; i < 40; i++) {
        const r = await trainer.step(x, 2);
        log.push({ l1: r.l1, kl: r.kl, p: r.perceptual, loss: r.loss });
      }
      const first = log[0], last = log.slice(-5);
      const lastL1 = last.reduce((a, r) => a + r.l1, 0) / last.length;
      console.log(`[autoencoder train] step 1 l1 ${first.l1.toFixed(4)} kl ${first.kl.toFixed(2)} p ${first.p.toFixed(4)} loss ${first.loss.toFixed(1)}; ` +
        `steps 36-40 l1 ${lastL1.toFixed(4)} kl ${last[4].kl.toFixed(2)} p ${last[4].p.toFixed(4)} loss ${last[4].loss.toFixed(1)}`);
      expect(trainer.trainer.step).toBe(40);
      expect(first.l1).toBeGreaterThan(0.3);
      expect(lastL1).toBeLessThan(0.5 * first.l1);
      expect(last[4].p).toBeLessThan(first.p);
      expect(tf.memory().numTensors).toBeLessThan(2000);
    } finally {
      trainer.dispose();
      store.dispose();
      filt.dispose();
    }
  });

  it('accumulates micro-batches of one image to the same loss as one batch of two', async () => {
    // The attention block has one head, so micro-batches of 1 exercise attention at batch x heads = 1.
    const x = images();
    const two = tensor(x.data.slice(0, 2 * 3 * 16 * 16), [2, 3, 16, 16], 'NCHW');
    const a = createAutoencoderParams(cfg, 6);
    const b = createAutoencoderParams(cfg, 6);
    const ta = new AutoencoderTrainer(a, cfg, { optimizer: { lr: 1e-3 }, seed: 8 });
    const tb = new AutoencoderTrainer(b, cfg, { optimizer: { lr: 1e-3 }, seed: 8 });
    try {
      const whole = await ta.step(two, 2);
      const parts = await tb.step(two, 1);
      expect(Number.isFinite(parts.loss)).toBe(true);
      expect(Math.abs(parts.loss - whole.loss) / whole.loss).toBeLessThan(1e-5);
    } finally {
      ta.dispose();
      tb.dispose();
      a.dispose();
      b.dispose();
    }
  });

  it('saves official-layout checkpoints and resumes them exactly', async () => {
    const x = images();
    const path = join(dir, 'ae.safetensors');
    const a = createAutoencoderParams(cfg, 2);
    const ta = new AutoencoderTrainer(a, cfg, { optimizer: { lr: 1e-3 }, seed: 4 });
    const b = createAutoencoderParams(cfg, 99);
    const tb = new AutoencoderTrainer(b, cfg, { optimizer: { lr: 1e-3 }, seed: 4 });
    try {
      await ta.step(x);
      await ta.step(x);
      await ta.save(path);

      // The weights file is a plain official-layout state dict.
      const file = await readSafetensors(path);
      expect(file.entry('first_stage_model.encoder.conv_in.weight').shape).toEqual([32, 3, 3, 3]);
      expect(file.names().length).toBe(a.size);
      const reloaded = await loadAutoencoderParams(path, cfg);
      const [h1, h2] = await Promise.all([a.toHost(), reloaded.toHost()]);
      reloaded.dispose();
      for (const n of Object.keys(h1)) expect(Buffer.compare(Buffer.from(h1[n].data.buffer), Buffer.from(h2[n].data.buffer)), n).toBe(0);

      await tb.resume(path);
      expect(tb.trainer.step).toBe(2);
      // Same parameters, optimizer moments, step and noise stream: the next update is identical.
      const sa = await ta.step(x), sb = await tb.step(x);
      expect(sb.loss).toBe(sa.loss);
      const [pa, pb] = await Promise.all([a.toHost(), b.toHost()]);
      for (const n of Object.keys(pa)) expect(Buffer.compare(Buffer.from(pa[n].data.buffer), Buffer.from(pb[n].data.buffer)), n).toBe(0);

      // Another configuration is refused.
      const other = new AutoencoderTrainer(b, cfg, { optimizer: { lr: 5e-4 }, seed: 4 });
      await expect(other.resume(path)).rejects.toThrow(/config hash/);
      other.dispose();
    } finally {
      ta.dispose();
      tb.dispose();
      a.dispose();
      b.dispose();
    }
  });
});
