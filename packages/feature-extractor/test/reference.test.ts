import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { anomalyMap, combineLevelMaps, cosineDistance, readSafetensors, maxAbsDiff, tensor, type HostTensor } from '@diad/core';
import { referenceDir, onnxFixtureDir, present } from './fixtures.js';

const hasRef = present(referenceDir, 'anomaly_map parity (DIAD_REFERENCE_DIR)');

describe.skipIf(!hasRef)('anomaly_map parity with the official code', () => {
  it('matches the official cal_anomaly_map and gaussian_filter', async () => {
    const cfg = JSON.parse(readFileSync(join(referenceDir, 'anomaly_map.json'), 'utf8'));
    const st = await readSafetensors(join(referenceDir, 'anomaly_map.safetensors'));
    const tol = Number(/([0-9.eE+-]+)\s*$/.exec(cfg.tolerance)![1]);
    const ins: HostTensor[] = [];
    const outs: HostTensor[] = [];
    for (let i = 0; st.has(`input.features_in.${i}`); i++) {
      ins.push(st.float32(`input.features_in.${i}`));
      outs.push(st.float32(`input.features_out.${i}`));
    }
    expect(ins.length).toBeGreaterThan(0);
    const size: [number, number] = Array.isArray(cfg.out_size) ? cfg.out_size : [cfg.out_size, cfg.out_size];
    const raw = st.float32('output.anomaly_map');
    const blurred = st.float32('output.anomaly_map_blurred');
    const n = ins[0].shape[0];

    const ours = combineLevelMaps(
      ins.map((f, i) => cosineDistance(f, outs[i])),
      { size, sigma: 0 },
    );
    expect(maxAbsDiff(tensor(ours.data, raw.shape), raw)).toBeLessThanOrEqual(tol);

    const map = anomalyMap(ins, outs, { size, sigma: cfg.sigma });
    expect(map.shape).toEqual([n, 1, ...size]);
    expect(maxAbsDiff(tensor(map.data, blurred.shape), blurred)).toBeLessThanOrEqual(tol);
  });
});

const hasOnnx = present(onnxFixtureDir, 'ONNX backbone parity (DIAD_ONNX_FIXTURE_DIR)');

describe.skipIf(!hasOnnx)('ONNX backbone parity', () => {
  it('reproduces the PyTorch features of the probe input', async () => {
    const { OnnxFeatureExtractor } = await import('@diad/core/ort');
    const cfg = JSON.parse(readFileSync(join(onnxFixtureDir, 'resnet18_trunk.json'), 'utf8'));
    // "max abs error <= 1e-4 * max(1, max|expected|)"
    const rel = Number(/<=\s*([0-9.eE+-]+)/.exec(cfg.tolerance)![1]);
    const io = await readSafetensors(join(onnxFixtureDir, 'resnet18_trunk_io.safetensors'));
    const outNames = io
      .names()
      .filter((k) => k.startsWith('output.'))
      .map((k) => k.slice('output.'.length));
    const ext = await OnnxFeatureExtractor.create(join(onnxFixtureDir, 'resnet18_trunk.onnx'), { outputs: outNames, batchSize: 1 });
    const input = io.float32('input');
    const feats = await ext.extract(input);
    expect(feats.length).toBe(outNames.length);
    outNames.forEach((name, i) => {
      const want = io.float32(`output.${name}`);
      let peak = 0;
      for (const v of want.data) peak = Math.max(peak, Math.abs(v));
      expect(feats[i].shape).toEqual(want.shape);
      expect(maxAbsDiff(tensor(feats[i].data, want.shape), want)).toBeLessThanOrEqual(rel * Math.max(1, peak));
      expect(ext.strides[i]).toBe(input.shape[2] / want.shape[2]);
    });
    await ext.dispose();
  });
});
