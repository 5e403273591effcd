import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tensor, type HostTensor } from '@diad/core';
import { initTfjs, TfjsOps } from '@diad/core/tfjs';
import { microConfig } from './micro.js';
import { posterior } from '../src/distribution.js';
import { decodeLatent, encodeMoments } from '../src/model.js';
import { createAutoencoderParams } from '../src/tfjs.js';
import { autoencoderLoss } from '../src/loss.js';
import { recordAutoencoderTraining } from '../src/train-graph.js';
import { OrtTrainer } from '@diad/core/ort';
import { Rng } from '@diad/core';

const cfg = microConfig();

/** Four smooth synthetic images (ramps and a bright square), values roughly in [-2, 2]. */
function images(): HostTensor<'float32'> {
  const n = 4,
    s = 16;
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
      let abs = 0,
        kl = 0;
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
      const { loss: wantLoss, grads: want } = await store.gradients(
        () => true,
        () => autoencoderLoss(ops, cfg, ops.input(x), ops.input(noise), { klWeight: 0.01 }).loss as tf.Scalar,
      );
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
          let err = 0,
            scale = 1e-3 * G;
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
});
