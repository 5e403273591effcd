/**
 * Parity with the official AutoencoderKL (fixture `autoencoder_kl`, computed by the official code in
 * float32): moments, mean, logvar and decoded_mean. Config, scale factor, shapes and tolerance come
 * from the fixture JSON. wasm checks the whole fixture and the stage's scale-factor handling; the
 * pure-JS cpu backend (the reference backend, ~50x slower) checks the encoder outputs of the first
 * image only, to keep the suite within its time budget.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { maxAbsDiff, readSafetensors, sliceBatch, tensor, type HostTensor, type SafetensorsFile } from '@diad/core';
import { initTfjs, ParamStore, TfjsOps } from '@diad/core/tfjs';
import { parseAutoencoderConfig, type AutoencoderConfig } from '../src/config.js';
import { posterior } from '../src/distribution.js';
import { decodeLatent, encodeMoments } from '../src/model.js';
import { paramSpec } from '../src/params.js';
import { tfjsAutoencoder } from '../src/tfjs.js';
import { HAS_REFERENCE, REFERENCE_DIR } from './fixture.js';

/** Relative tolerance from the JSON's "max abs error <= R * max(1, max|expected|)". */
function relTolerance(text: string): number {
  const m = /<=\s*([0-9.eE+-]+)\s*\*\s*max\(1,\s*max\|expected\|\)/.exec(String(text));
  if (!m) throw new Error(`autoencoder_kl.json: cannot parse tolerance "${text}"`);
  return Number(m[1]);
}

function maxAbs(t: HostTensor<'float32'>): number {
  let m = 0;
  for (const v of t.data) m = Math.max(m, Math.abs(v));
  return m;
}

interface Fixture {
  json: { tolerance: string; scale_factor: number };
  cfg: AutoencoderConfig;
  file: SafetensorsFile;
}

async function loadFixture(): Promise<Fixture> {
  const json = JSON.parse(await readFile(join(REFERENCE_DIR, 'autoencoder_kl.json'), 'utf8'));
  const file = await readSafetensors(join(REFERENCE_DIR, 'autoencoder_kl.safetensors'));
  return { json, cfg: parseAutoencoderConfig(json, 'autoencoder_kl.json'), file };
}

/** Loads the official parameters (strictly: names and shapes must match `paramSpec`). */
function officialParams(fx: Fixture): ParamStore {
  const store = ParamStore.create(paramSpec(fx.cfg), 0);
  store.load(fx.file, { prefix: 'first_stage_model.' });
  return store;
}

const errors: Record<string, Record<string, number>> = {};

function check(engine: string, name: string, got: HostTensor<'float32'>, want: HostTensor<'float32'>, rel: number): void {
  expect(got.shape, name).toEqual(want.shape);
  const err = maxAbsDiff(got, want);
  (errors[engine] ??= {})[name] = err;
  expect(err, name).toBeLessThanOrEqual(rel * Math.max(1, maxAbs(want)));
}

describe.skipIf(!HAS_REFERENCE)('AutoencoderKL parity with the official fixture', () => {
  it('wasm: moments, mean, logvar, decoded_mean; stage encode/decode with the scale factor', async () => {
    await initTfjs({ engine: 'wasm' });
    const fx = await loadFixture();
    const rel = relTolerance(fx.json.tolerance);
    const out = (k: string) => fx.file.float32(`output.${k}`);
    const image = fx.file.float32('input.image');
    const store = officialParams(fx);
    try {
      const ops = new TfjsOps(store);
      const outs = tf.tidy(() => {
        const moments = encodeMoments(ops, fx.cfg, ops.input(image));
        const p = posterior(ops, moments);
        return { moments, mean: p.mean, logvar: p.logvar, decoded_mean: decodeLatent(ops, fx.cfg, p.mean) };
      });
      for (const [k, t] of Object.entries(outs)) {
        const got = await ops.read(t);
        t.dispose();
        check('wasm', k, got, out(k), rel);
      }

      // The stage as the official pipeline: encode multiplies by scale_factor, decode divides.
      const sf = Number(fx.json.scale_factor);
      const stage = tfjsAutoencoder(store, fx.cfg, { scaleFactor: sf });
      const mean = out('mean');
      const scaledMean = tensor(
        mean.data.map((v) => v * sf),
        mean.shape,
      );
      const z = await stage.encode(image);
      check('wasm', 'stage.encode', z, scaledMean, rel);
      check('wasm', 'stage.decode', await stage.decode(z), out('decoded_mean'), rel);
      console.log(`[autoencoder parity wasm] max abs errors ${JSON.stringify(errors.wasm)}`);
    } finally {
      store.dispose();
    }
  });

  it('cpu: moments, mean, logvar of the first image', async () => {
    await initTfjs({ engine: 'cpu' });
    const fx = await loadFixture();
    const rel = relTolerance(fx.json.tolerance);
    const first = (k: string) => sliceBatch(fx.file.float32(k), 0, 1);
    const store = officialParams(fx);
    try {
      const ops = new TfjsOps(store);
      const outs = tf.tidy(() => {
        const moments = encodeMoments(ops, fx.cfg, ops.input(first('input.image')));
        const p = posterior(ops, moments);
        return { moments, mean: p.mean, logvar: p.logvar };
      });
      for (const [k, t] of Object.entries(outs)) {
        const got = await ops.read(t);
        t.dispose();
        check('cpu', k, got, first(`output.${k}`), rel);
      }
      console.log(`[autoencoder parity cpu] max abs errors ${JSON.stringify(errors.cpu)}`);
    } finally {
      store.dispose();
    }
  });
});
