import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { IMAGENET_MEAN, IMAGENET_STD, maxAbsDiff, Rng, tensor } from '@diad/core';
import { initTfjs, TfjsOps } from '@diad/core/tfjs';
import { microConfig } from './micro.js';
import { posterior } from '../src/distribution.js';
import { encodeMoments } from '../src/model.js';
import { createAutoencoderParams, tfjsAutoencoder } from '../src/tfjs.js';

const cfg = microConfig([]);
const images = tensor(new Rng(3).normals(2 * 3 * 16 * 16), [2, 3, 16, 16], 'NCHW');

/** ImageNet-normalised -> [-1, 1] by hand: 2 * (x * std + mean) - 1. */
function toSymmetric(x: typeof images) {
  return tensor(
    x.data.map((v, i) => {
      const c = Math.floor(i / 256) % 3;
      return 2 * (v * IMAGENET_STD[c] + IMAGENET_MEAN[c]) - 1;
    }),
    x.shape,
    'NCHW',
  );
}

beforeAll(async () => {
  await initTfjs({ engine: 'wasm' });
});

describe('AutoencoderKLStage', () => {
  it('samples mean + exp(logvar/2) * eps with eps = Rng(seed).normals, times the scale factor', async () => {
    const store = createAutoencoderParams(cfg, 8);
    try {
      const ops = new TfjsOps(store);
      const [m, lv] = tf.tidy(() => {
        const p = posterior(ops, encodeMoments(ops, cfg, ops.input(images)));
        return [p.mean, p.logvar];
      });
      const [mean, logvar] = [await ops.read(m), await ops.read(lv)];
      tf.dispose([m, lv]);
      const stage = tfjsAutoencoder(store, cfg, { scaleFactor: 0.5 });
      expect([stage.latentChannels, stage.downsampleFactor]).toEqual([4, 2]);
      const eps = new Rng(11).normals(mean.data.length);
      const want = tensor(
        mean.data.map((v, i) => 0.5 * (v + Math.exp(0.5 * logvar.data[i]) * eps[i])),
        mean.shape,
      );
      const got = await stage.encode(images, { sample: true, seed: 11 });
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
      const mode = await stage.encode(images);
      expect(
        maxAbsDiff(
          mode,
          tensor(
            mean.data.map((v) => 0.5 * v),
            mean.shape,
          ),
        ),
      ).toBeLessThan(1e-6);
      await expect(stage.encode(tensor(new Float32Array(3 * 15 * 15), [1, 3, 15, 15]))).rejects.toThrow(/multiples of 2/);
    } finally {
      store.dispose();
    }
  });

  it('pixelRange "symmetric" feeds [-1, 1] images and returns ImageNet-normalised ones', async () => {
    const store = createAutoencoderParams(cfg, 9);
    try {
      const official = tfjsAutoencoder(store, cfg);
      const symmetric = tfjsAutoencoder(store, cfg, { pixelRange: 'symmetric' });
      const z = await symmetric.encode(images);
      expect(maxAbsDiff(z, await official.encode(toSymmetric(images)))).toBeLessThan(1e-5);
      const rec = await symmetric.decode(z);
      // Mapping the result back to [-1, 1] gives the raw decoder output.
      expect(maxAbsDiff(toSymmetric(rec), await official.decode(z))).toBeLessThan(1e-4);
    } finally {
      store.dispose();
    }
  });
});
