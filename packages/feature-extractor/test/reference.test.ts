import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors, maxAbsDiff, tensor } from '@diad/core';
import { anomalyMap, combineLevelMaps, cosineDistance } from '../src/index.js';
import { referenceDir, onnxFixtureDir, present } from './fixtures.js';

const hasRef = present(referenceDir, 'anomaly_map parity (DIAD_REFERENCE_DIR)');

describe.skipIf(!hasRef)('anomaly_map parity with the official code', () => {
  it('matches the official cal_anomaly_map and gaussian_filter', async () => {
    const cfg = JSON.parse(readFileSync(join(referenceDir, 'anomaly_map.json'), 'utf8'));
    const st = await readSafetensors(join(referenceDir, 'anomaly_map.safetensors'));
    const tol = Number(/([0-9.eE+-]+)\s*$/.exec(cfg.tolerance)![1]);
    const ins = [];
    const outs = [];
    for (let i = 0; st.has(`input.features_in.${i}`); i++) {
      ins.push(st.float32(`input.features_in.${i}`));
      outs.push(st.float32(`input.features_out.${i}`));
    }
    expect(ins.length).toBeGreaterThan(0);
    const size: [number, number] = Array.isArray(cfg.out_size) ? cfg.out_size : [cfg.out_size, cfg.out_size];
    const raw = st.float32('output.anomaly_map');
    const blurred = st.float32('output.anomaly_map_blurred');
    const n = ins[0].shape[0];

    const ours = combineLevelMaps(ins.map((f, i) => cosineDistance(f, outs[i])), { size, sigma: 0 });
    expect(maxAbsDiff(tensor(ours.data, raw.shape), raw)).toBeLessThanOrEqual(tol);

    const map = anomalyMap(ins, outs, { size, sigma: cfg.sigma });
    expect(map.shape).toEqual([n, 1, ...size]);
    expect(maxAbsDiff(tensor(map.data, blurred.shape), blurred)).toBeLessThanOrEqual(tol);
  });
});
