/**
 * The AutoencoderKL recorded to ONNX and run on onnxruntime-node: parity with the official fixture
 * (`autoencoder_kl`, DIAD_REFERENCE_DIR; config, shapes and tolerance from its JSON) and with
 * TfjsOps on random weights (1e-4 relative, the export criterion), at two batch sizes; the
 * exported stage graphs through OrtAutoencoder against the tfjs AutoencoderKLStage.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { maxAbsDiff, readSafetensors, Rng, tensor, writeFileAtomic, type HostTensor } from '@diad/core';
import { initTfjs, TfjsOps } from '@diad/core/tfjs';
import { createOrtSession } from '@diad/core/ort';
import { parseAutoencoderConfig } from '../src/config.js';
import { decodeLatent, encodeMoments } from '../src/model.js';
import { OrtAutoencoder } from '@diad/core/ort';
import { downsampleFactor } from '../src/config.js';
import { exportAutoencoderOnnx, recordAutoencoderDecoder, recordAutoencoderEncoder } from '../src/onnx.js';
import { createAutoencoderParams, tfjsAutoencoder } from '../src/tfjs.js';
import { HAS_REFERENCE, REFERENCE_DIR } from './fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'diad-ae-onnx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const maxAbs = (t: HostTensor): number => t.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

async function runOnnx(path: string, name: string, x: HostTensor): Promise<HostTensor> {
  const s = await createOrtSession(path);
  try {
    return Object.values(await s.run({ [name]: x }))[0] as HostTensor;
  } finally {
    await s.release();
  }
}

describe.skipIf(!HAS_REFERENCE)('AutoencoderKL ONNX parity with the official fixture', () => {
  it('encoder moments and decoder(mean) through onnxruntime', async () => {
    const json = JSON.parse(await readFile(join(REFERENCE_DIR, 'autoencoder_kl.json'), 'utf8'));
    const cfg = parseAutoencoderConfig(json, 'autoencoder_kl.json');
    const file = await readSafetensors(join(REFERENCE_DIR, 'autoencoder_kl.safetensors'));
    const m = /<=\s*([0-9.eE+-]+)\s*\*\s*max\(1,\s*max\|expected\|\)/.exec(String(json.tolerance));
    if (!m) throw new Error(`autoencoder_kl.json: cannot parse tolerance "${json.tolerance}"`);
    const rel = Number(m[1]);
    const params: Record<string, HostTensor> = {};
    for (const n of file.names()) if (n.startsWith('first_stage_model.')) params[n] = file.float32(n);
    const image = file.float32('input.image');
    const [, , h, w] = image.shape;
    const paths = { encoder: join(dir, 'fx_encoder.onnx'), decoder: join(dir, 'fx_decoder.onnx') };
    await writeFileAtomic(paths.encoder, recordAutoencoderEncoder(cfg, params, { height: h, width: w }));
    await writeFileAtomic(paths.decoder, recordAutoencoderDecoder(cfg, params, { height: h, width: w }));
    const errors: Record<string, number> = {};
    const check = (name: string, got: HostTensor, want: HostTensor) => {
      expect(got.shape, name).toEqual(want.shape);
      errors[name] = maxAbsDiff(got, want);
      expect(errors[name], name).toBeLessThanOrEqual(rel * Math.max(1, maxAbs(want)));
    };
    check('moments', await runOnnx(paths.encoder, 'image', image), file.float32('output.moments'));
    check('decoded_mean', await runOnnx(paths.decoder, 'latent', file.float32('output.mean')), file.float32('output.decoded_mean'));
    console.log(`[autoencoder onnx parity] max abs errors ${JSON.stringify(errors)}`);
  });
});

describe('AutoencoderKL ONNX vs TfjsOps on random weights', () => {
  it('encoder and decoder agree within 1e-4 relative, batch 1 and 3; OrtAutoencoder equals the tfjs stage (mode, sample, decode)', async () => {
    await initTfjs({ engine: 'wasm' });
    const cfg = parseAutoencoderConfig({
      ddconfig: {
        double_z: true,
        z_channels: 4,
        resolution: 32,
        in_channels: 3,
        out_ch: 3,
        ch: 32,
        ch_mult: [1, 2],
        num_res_blocks: 1,
        attn_resolutions: [16],
        dropout: 0,
      },
      embed_dim: 4,
    });
    const store = createAutoencoderParams(cfg, 5);
    try {
      const params = await store.toHost();
      const paths = { encoder: join(dir, 'rnd_encoder.onnx'), decoder: join(dir, 'rnd_decoder.onnx') };
      await writeFileAtomic(paths.encoder, recordAutoencoderEncoder(cfg, params, { height: 32, width: 32 }));
      await writeFileAtomic(paths.decoder, recordAutoencoderDecoder(cfg, params, { height: 32, width: 32 }));
      const ops = new TfjsOps(store);
      const errors: Record<string, number> = {};
      for (const n of [1, 3]) {
        const image = tensor(new Rng(n).normals(n * 3 * 32 * 32), [n, 3, 32, 32], 'NCHW');
        const latent = tensor(new Rng(10 + n).normals(n * 4 * 16 * 16), [n, 4, 16, 16], 'NCHW');
        const [mT, dT] = tf.tidy(() => [encodeMoments(ops, cfg, ops.input(image)), decodeLatent(ops, cfg, ops.input(latent))]);
        const want = { moments: await ops.read(mT), image: await ops.read(dT) };
        tf.dispose([mT, dT]);
        const got = { moments: await runOnnx(paths.encoder, 'image', image), image: await runOnnx(paths.decoder, 'latent', latent) };
        for (const k of ['moments', 'image'] as const) {
          expect(got[k].shape).toEqual(want[k].shape);
          const rel = maxAbsDiff(got[k], want[k]) / maxAbs(want[k]);
          errors[`${k}@${n}`] = rel;
          expect(rel, `${k} batch ${n}`).toBeLessThanOrEqual(1e-4);
        }
      }

      // The stage graphs (scale factor, posterior sample) against the tfjs stage.
      const files = await exportAutoencoderOnnx(join(dir, 'stage'), cfg, params, { height: 32, width: 32, scaleFactor: 0.5 });
      const ortStage = await OrtAutoencoder.open(files, { latentChannels: cfg.embed_dim, downsampleFactor: downsampleFactor(cfg) });
      const tfStage = tfjsAutoencoder(store, cfg, { scaleFactor: 0.5 });
      const image = tensor(new Rng(21).normals(2 * 3 * 32 * 32), [2, 3, 32, 32], 'NCHW');
      const pairs: [string, HostTensor, HostTensor][] = [
        ['stage.encode', await ortStage.encode(image), await tfStage.encode(image)],
        ['stage.encode(sample)', await ortStage.encode(image, { sample: true, seed: 3 }), await tfStage.encode(image, { sample: true, seed: 3 })],
      ];
      pairs.push(['stage.decode', await ortStage.decode(pairs[0][2]), await tfStage.decode(pairs[0][2])]);
      for (const [k, got, want] of pairs) {
        expect(got.shape, k).toEqual(want.shape);
        errors[k] = maxAbsDiff(got, want) / maxAbs(want);
        expect(errors[k], k).toBeLessThanOrEqual(1e-4);
      }
      expect(maxAbsDiff(pairs[0][1], pairs[1][1])).toBeGreaterThan(1e-3); // the sample is not the mode
      await ortStage.release();
      console.log(`[autoencoder onnx vs tfjs-wasm] relative errors ${JSON.stringify(errors)}`);
    } finally {
      store.dispose();
    }
  });
});
