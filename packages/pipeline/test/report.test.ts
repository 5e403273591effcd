import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { IMAGENET_MEAN, IMAGENET_STD } from '@diad/core';
import { jet, overlayHeatmap } from '@diad/datasets';
import {
  denormalizeToRgb,
  writeStrip,
  writeReport,
  metricsCsv,
  metricsMarkdown,
  bestAndWorst,
  thin,
  reportHtml,
  type ReportInput,
  type MetricRow,
  type ImageRecord,
} from '../src/report/index.js';
import { findChromium, screenshot, imageStats } from '../src/report/screenshot.js';
import { rocCurve, proCurve, storedImage } from '../src/report/curves.js';
import { binsFromScores, pixelBins, rocAuc, standardAuPro } from '@diad/metrics';
import { Rng } from '@diad/core';

const row = (v: number): MetricRow => ({
  aurocImage: v,
  apImage: v - 0.01,
  f1MaxImage: v - 0.02,
  aurocPixel: v - 0.03,
  apPixel: v - 0.04,
  f1MaxPixel: v - 0.05,
  auPro: v - 0.06,
});

/** A normalised [3,H,W] image whose RGB bytes are (x*4, y*4, 128). */
function gradient(h: number, w: number): Float32Array {
  const out = new Float32Array(3 * h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const rgb = [x * 4, y * 4, 128];
      for (let c = 0; c < 3; c++) out[c * h * w + y * w + x] = (rgb[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    }
  return out;
}

describe('colormap', () => {
  it('matches matplotlib jet at 0, 0.5, 1 and clamps', () => {
    expect(jet(0)).toEqual([0, 0, 128]);
    expect(jet(0.5)).toEqual([128, 255, 128]);
    expect(jet(1)).toEqual([128, 0, 0]);
    expect(jet(-3)).toEqual(jet(0));
  });
  it('blends half heatmap, half image', () => {
    const out = overlayHeatmap(new Float32Array([0, 2]), new Uint8Array([100, 100, 100, 0, 0, 0]), 0, 2);
    expect([...out]).toEqual([50, 50, 114, 64, 0, 0]);
  });
  it('denormalises ImageNet-normalised images back to bytes', () => {
    const rgb = denormalizeToRgb(gradient(2, 3), 2, 3);
    expect([...rgb.slice(0, 6)]).toEqual([0, 0, 128, 4, 0, 128]);
    expect([...rgb.slice(15, 18)]).toEqual([8, 4, 128]);
  });
});

/** What a test records of how it was made (contents do not matter to the writers). */
const provenance: ReportInput['provenance'] = {
  run: 'runs/x',
  configHash: 'abc',
  checkpoints: { sg: 'checkpoints/sg-000010.safetensors' },
  dataRoots: ['/data'],
  classes: ['bottle'],
  unseenClasses: [],
  engine: 'tfjs cpu',
  featureExtractor: 'mobilenet_v2',
  inference: {},
  inferenceHash: 'abc',
  versions: { '@diad/pipeline': '0.1.0' },
  date: '2026-01-01T00:00:00Z',
};

describe('metric tables', () => {
  const r = {
    title: 't',
    config: {},
    configHash: 'abc',
    images: [],
    timings: [],
    skipped: [],
    facts: {},
    provenance,
    classes: [
      {
        className: 'bottle',
        good: 2,
        defective: 3,
        metrics: { standard: row(0.9), diad: row(0.8) },
        curves: { imageRoc: { x: [], y: [] }, pixelRoc: { x: [], y: [] }, pro: { x: [], y: [] } },
      },
    ],
    mean: { standard: row(0.9), diad: row(0.8) },
  } as ReportInput;
  it('CSV has a row per mode and class plus mean, in column order', () => {
    const lines = metricsCsv(r).trim().split('\n');
    expect(lines[0]).toBe('mode,class,aurocImage,apImage,f1MaxImage,aurocPixel,apPixel,f1MaxPixel,auPro');
    expect(lines).toHaveLength(5);
    expect(lines[1]).toBe('standard,bottle,0.900000,0.890000,0.880000,0.870000,0.860000,0.850000,0.840000');
    expect(lines[4].startsWith('diad,mean,0.800000')).toBe(true);
  });
  it('Markdown shows percent with one decimal', () => {
    const md = metricsMarkdown(r);
    expect(md).toContain('| bottle | 90.0 | 89.0 | 88.0 | 87.0 | 86.0 | 85.0 | 84.0 |');
    expect(md).toContain('### diad mode');
  });
  it('the validation section says how the defective validation images were made', async () => {
    const point = { stage: 'sg', step: 4, tStart: 300, value: 0.9, aurocImage: 0.9, aurocPixel: 0.9, auPro: 0.8 };
    const validation = {
      rule: 'rule',
      points: [point],
      selected: { stage: 'sg', step: 4, tStart: 300 },
      reconstruction: { bottle: { autoencoderL1: 0.1, diadL1: 0.2, featureDistance: 0.3 } },
      classes: { bottle: { aurocImage: 0.9, aurocPixel: 0.9, auPro: 0.8 } },
    };
    const dir = mkdtempSync(join(tmpdir(), 'diad-report-'));
    const one = await reportHtml(dir, { ...r, validation });
    expect(one).toContain('plus a synthesised defect (cut-paste, scratch, spot, texture blend, missing part; exact masks) on a copy of each;');
    const three = await reportHtml(dir, { ...r, validation: { ...validation, defects: { copies: 3, scale: 0.5, contrast: 0.5 } } });
    expect(three).toContain('plus 3 defective copies of each with synthesised defects');
    expect(three).toContain('at 0.5x the default size and 0.5x the default strength; never the test split');
  });
});

/** Trapezoid area under a curve up to x = limit (last segment interpolated). */
function area(c: { x: number[]; y: number[] }, limit = 1): number {
  let a = 0;
  for (let i = 1; i < c.x.length && c.x[i - 1] < limit; i++) {
    const x1 = Math.min(c.x[i], limit);
    const y1 = c.x[i] > limit ? c.y[i - 1] + ((c.y[i] - c.y[i - 1]) * (limit - c.x[i - 1])) / (c.x[i] - c.x[i - 1]) : c.y[i];
    a += 0.5 * (c.y[i - 1] + y1) * (x1 - c.x[i - 1]);
  }
  return a;
}

describe('curves drawn from @diad/metrics rank bins', () => {
  const rng = new Rng(3);
  it('ROC curve area equals @diad/metrics AUROC (ties included)', () => {
    const scores = Array.from({ length: 200 }, () => Math.round(rng.normal() * 4) / 4);
    const labels = scores.map((s) => (s + rng.normal() > 0.5 ? 1 : 0));
    const c = rocCurve(binsFromScores(scores, labels));
    expect(c.x[0]).toBe(0);
    expect(c.x[c.x.length - 1]).toBe(1);
    expect(area(c)).toBeCloseTo(rocAuc(scores, labels), 12);
  });
  it('PRO curve area to FPR 0.3 equals @diad/metrics standard AU-PRO', () => {
    const H = 16,
      W = 16;
    const images = Array.from({ length: 6 }, (_, k) => {
      const map = new Float32Array(H * W).map(() => rng.uniform());
      const mask = new Uint8Array(H * W);
      if (k % 2)
        for (let y = 3; y < 8; y++)
          for (let x = 2 + k; x < 9 + k; x++) {
            mask[y * W + x] = 1;
            map[y * W + x] += 0.5 * rng.uniform();
          }
      return storedImage(map, k % 2 ? mask : null, H, W, (k % 2) as 0 | 1, k % 2 ? 'x' : 'good');
    });
    const b = pixelBins(images, null);
    expect(area(proCurve(b, 0.3), 0.3) / 0.3).toBeCloseTo(standardAuPro(b, 0.3), 10);
  });
});

describe('best and worst', () => {
  it('picks top defective as best, lowest defective and highest normal as worst, per class', () => {
    const mk = (id: string, label: 0 | 1, score: number): ImageRecord => ({
      id,
      className: 'a',
      defectType: label ? 'x' : 'good',
      label,
      path: id,
      score,
      strip: id,
    });
    const { best, worst } = bestAndWorst([mk('d1', 1, 0.9), mk('d2', 1, 0.5), mk('d3', 1, 0.1), mk('d4', 1, 0.7), mk('g1', 0, 0.6), mk('g2', 0, 0.2)], 1);
    expect(best.map((i) => i.id)).toEqual(['d1']);
    expect(worst.map((i) => i.id)).toEqual(['d3', 'g1']);
  });
  it('thins curves keeping both ends', () => {
    const c = thin({ x: Array.from({ length: 1001 }, (_, i) => i / 1000), y: Array.from({ length: 1001 }, (_, i) => i / 1000) }, 11);
    expect(c.x).toHaveLength(11);
    expect(c.x[0]).toBe(0);
    expect(c.x[10]).toBe(1);
  });
});

describe('report.html in headless Chromium', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-report-'));
  const H = 64,
    W = 64;
  let input: ReportInput;
  beforeAll(async () => {
    const images: ImageRecord[] = [];
    for (let k = 0; k < 4; k++) {
      const map = new Float32Array(H * W);
      const mask = new Uint8Array(H * W);
      for (let y = 20; y < 40; y++)
        for (let x = 10 + k * 5; x < 30 + k * 5; x++) {
          map[y * W + x] = 1 + k;
          mask[y * W + x] = k > 1 ? 1 : 0;
        }
      const id = `cls_${k}`;
      await writeStrip(join(dir, 'strips', `${id}.png`), {
        input: gradient(H, W),
        reconstruction: gradient(H, W).map((v) => v * 0.8),
        map,
        mask: k > 1 ? mask : null,
        height: H,
        width: W,
        range: [0, 4],
      });
      images.push({
        id,
        className: 'cls',
        defectType: k > 1 ? 'scratch' : 'good',
        label: k > 1 ? 1 : 0,
        path: `/data/${id}.png`,
        score: k,
        strip: `strips/${id}.png`,
      });
    }
    const ramp = { x: [0, 0.1, 0.5, 1], y: [0, 0.6, 0.9, 1] };
    input = {
      title: 'report test',
      config: { preset: 'test' },
      configHash: 'deadbeef0000',
      images,
      provenance,
      classes: [
        {
          className: 'cls',
          good: 2,
          defective: 2,
          metrics: { standard: row(0.9), diad: row(0.85) },
          curves: { imageRoc: ramp, pixelRoc: ramp, pro: { x: [0, 0.3], y: [0, 0.7] } },
        },
      ],
      mean: { standard: row(0.9), diad: row(0.85) },
      timings: [
        { name: 'stage 1', seconds: 12.5 },
        { name: 'test', seconds: 3 },
      ],
      skipped: [{ path: '/data/broken.png', reason: 'truncated PNG' }],
      facts: { engine: 'tfjs-wasm' },
    };
    await writeReport(dir, input);
  });

  it('strips are 4 tiles wide with the heatmap over the defect', async () => {
    const { data, info } = await sharp(join(dir, 'strips', 'cls_3.png'))
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([4 * W + 12, H]);
    const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
    expect(px(5, 3)).toEqual([20, 12, 128]); // input tile: (x*4, y*4, 128)
    expect(px(3 * (W + 4) + 30, 30)).toEqual([255, 255, 255]); // mask tile inside the defect
    expect(px(3 * (W + 4) + 2, 2)).toEqual([0, 0, 0]);
    expect(px(2 * (W + 4) + 30, 30)[0]).toBeGreaterThan(120); // hot (map 4 = top of range): red
  });

  it('is self-contained: no external URLs, strips embedded, skipped count shown', () => {
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).not.toMatch(/(src|href)="https?:/);
    expect(html).toContain('data:image/png;base64,');
    expect(html).toContain('<svg');
    expect(html).toContain('<td id="skipped-count">1</td>');
    expect(html).toContain('90.0');
  });

  const chromium = findChromium();
  it.runIf(chromium)(
    'renders to a non-blank screenshot',
    async () => {
      const png = join(dir, 'screenshot.png');
      await screenshot(chromium!, join(dir, 'report.html'), png);
      expect(statSync(png).size).toBeGreaterThan(20_000);
      const s = await imageStats(png);
      expect([s.width, s.height]).toEqual([1280, 2000]);
      expect(s.std).toBeGreaterThan(10);
      expect(s.nonWhite).toBeGreaterThan(0.02);
    },
    120_000,
  );
  if (!chromium) console.warn("report screenshot test skipped: no chromium at /usr/bin/chromium or $CHROMIUM (CI installs Debian's chromium package)");
});
