/**
 * Golden parity with the official DiAD evaluation (`utils/eval_helper.performances`): every value
 * of metrics.json from the maps and masks of metrics.safetensors, in `diad` mode. Class names,
 * shapes, expected values and tolerances all come from the fixture folder, so any folder of the
 * same format works (DIAD_REFERENCE_DIR).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MetricsAccumulator, OFFICIAL_METRIC_KEYS, toOfficialKeys } from '../src/index.js';
import { readSafetensors } from './safetensors.js';
import { fixturesPresent, REFERENCE_DIR } from '@diad/core/testing';

const dir = REFERENCE_DIR;
const present = fixturesPresent('metrics reference', resolve(dir, 'metrics.json'), resolve(dir, 'metrics.safetensors'));

interface Fixture {
  classes: string[];
  expected: Record<string, number>;
  tolerance: string;
}

/** "AUROC, AP, F1-max: abs error <= 1e-6; AU-PRO: abs error <= 1e-4" -> per official metric key. */
function tolerances(text: string): (key: string) => number {
  const num = (re: RegExp): number => {
    const m = text.match(re);
    if (!m) throw new Error(`metrics.json: cannot read a tolerance matching ${re} from "${text}"`);
    return Number(m[1]);
  };
  const pro = num(/AU-PRO[^;]*?<=\s*([0-9.eE+-]+)/);
  const rest = num(/F1-max[^;]*?<=\s*([0-9.eE+-]+)/);
  return (key) => (key === 'pro' ? pro : rest);
}

describe.skipIf(!present)(`official DiAD evaluation parity (${dir})`, () => {
  const fx = present ? (JSON.parse(readFileSync(resolve(dir, 'metrics.json'), 'utf8')) as Fixture) : null;
  const t = present ? readSafetensors(resolve(dir, 'metrics.safetensors')) : null;

  it('reproduces every class and mean value of metrics.json in diad mode', () => {
    const maps = t!.get('input.anomaly_maps')!;
    const masks = t!.get('input.masks')!;
    const [n, h, w] = maps.shape;
    expect(masks.shape).toEqual(maps.shape);
    expect(fx!.classes.length).toBe(n);
    const acc = new MetricsAccumulator();
    for (let i = 0; i < n; i++) {
      const map = Float32Array.from(maps.data.subarray(i * h * w, (i + 1) * h * w));
      const mask = Uint8Array.from(masks.data.subarray(i * h * w, (i + 1) * h * w), (v) => (v > 0 ? 1 : 0));
      acc.add(fx!.classes[i], map, mask, { height: h, width: w });
    }
    const report = acc.compute({ mode: 'diad' });
    const ours = toOfficialKeys(report);
    const tol = tolerances(fx!.tolerance);
    const keys = Object.keys(fx!.expected);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      const metric = key.split('_').at(-2)!;
      expect(OFFICIAL_METRIC_KEYS[metric], `unknown metric in key ${key}`).toBeDefined();
      expect(ours[key], `${key} missing or undefined: ${JSON.stringify(report.classes[key.slice(0, -(metric.length + 5))]?.reasons)}`).not.toBeNull();
      expect(Math.abs(ours[key]! - fx!.expected[key]), `${key}: ours ${ours[key]} vs ${fx!.expected[key]}`).toBeLessThanOrEqual(tol(metric));
    }
  });

  it('reproduces the official image scores (max after eight 8x8 average poolings)', () => {
    const maps = t!.get('input.anomaly_maps')!;
    const expected = t!.get('output.image_scores')!;
    const [n, h, w] = maps.shape;
    const acc = new MetricsAccumulator();
    const order = new Map<string, number[]>();
    for (let i = 0; i < n; i++) {
      const cls = fx!.classes[i];
      acc.add(cls, Float32Array.from(maps.data.subarray(i * h * w, (i + 1) * h * w)), null, { height: h, width: w });
      order.set(cls, [...(order.get(cls) ?? []), i]);
    }
    for (const [cls, idx] of order) {
      const scores = acc.imageScores(cls, 'diad');
      idx.forEach((i, k) => {
        // torch pools in float32; we sum in float64: agreement to float32 precision.
        expect(Math.abs(scores[k] - expected.data[i]), `${cls} image ${i}`).toBeLessThanOrEqual(2e-6 * Math.max(1, Math.abs(expected.data[i])));
      });
    }
  });
});
