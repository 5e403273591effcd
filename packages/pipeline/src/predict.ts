/**
 * `diad predict`: per image the score, the decision at the threshold fixed on the validation
 * split (a target false-positive rate on normal validation images, see `settings.ts`), and the
 * anomaly map as a heatmap PNG.
 */
import { basename, join, resolve } from 'node:path';
import { loadImageFolder, loadRgb, rgbToTensor } from '@diad/datasets';
import { promises as fs } from 'node:fs';
import { scoreImages, sliceBatch } from '@diad/core';
import type { RunDir } from './run-dir.js';
import type { InferenceConfig } from './config.js';
import { calibrate, checkSettings, readValidation, resolveSettings, settingsHash } from './settings.js';
import { openInference, type EngineOptions } from './inference.js';
import { writeHeatmapPng } from './report/strip.js';

export interface Prediction {
  image: string;
  /** Image score (max of the anomaly map); null when the image could not be read. */
  score: number | null;
  /** The decision threshold of the settings (null when no image could be read, so none was computed). */
  threshold: number | null;
  /** score >= threshold. */
  anomalous: boolean | null;
  /** Heatmap PNG (jet over the image, range median validation pixel .. threshold). */
  anomalyMap: string | null;
  /** Hash of the inference settings it was scored with (as in metrics.json's `provenance.inferenceHash`). */
  inferenceHash: string;
  error?: string;
}

/**
 * The image paths to score: files as given, folders replaced by the images directly in them
 * (sorted; as `loadImageFolder` reads them). A folder without images is reported through `fail`.
 */
async function expandFolders(paths: readonly string[], fail: (path: string, error: string) => void): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths.map((x) => resolve(x))) {
    if (!(await fs.stat(p).catch(() => null))?.isDirectory()) {
      out.push(p);
      continue;
    }
    try {
      out.push(...(await loadImageFolder(p)).samples.map((s) => s.imagePath));
    } catch (e) {
      fail(p, (e as Error).message.split('\n')[0]);
    }
  }
  return out;
}

/**
 * Scores images (or the images of folders) with a fitted run; heatmaps go to `outDir`.
 * @throws Error when the run is not fitted.
 */
export async function predict(
  run: RunDir,
  paths: string[],
  outDir: string,
  log: (l: string) => void = () => {},
  engine: EngineOptions = {},
  settings?: InferenceConfig,
): Promise<Prediction[]> {
  const v = await readValidation(run);
  const inference = settings ?? resolveSettings(run, v);
  await checkSettings(inference);
  const size = run.config.data.imageSize;
  const failed: { image: string; error: string }[] = [];
  const ok: { path: string; rgb: Awaited<ReturnType<typeof loadRgb>> }[] = [];
  for (const p of await expandFolders(paths, (image, error) => failed.push({ image, error }))) {
    try {
      ok.push({ path: p, rgb: await loadRgb(p, size) });
    } catch (e) {
      failed.push({ image: p, error: (e as Error).message.split('\n')[0] });
    }
  }
  const out: Omit<Prediction, 'inferenceHash'>[] = [];
  let threshold: number | null = null;
  if (ok.length) {
    const stages = await openInference(run, inference, engine, log);
    log(`engine: ${stages.engine}`);
    try {
      const cal = await calibrate(run, v, inference, stages, log);
      threshold = cal.threshold;
      const images = rgbToTensor(ok.map((o) => o.rgb));
      const scored = await scoreImages(stages, images, inference, run.config.seed);
      const hw = size * size;
      for (let k = 0; k < ok.length; k++) {
        const png = join(resolve(outDir), `${String(k).padStart(3, '0')}-${basename(ok[k].path).replace(/\.[^.]+$/, '')}.png`);
        await writeHeatmapPng(png, sliceBatch(images, k, k + 1).data, scored.maps.data.slice(k * hw, (k + 1) * hw), size, size, cal.mapRange);
        out.push({ image: ok[k].path, score: scored.scores[k], threshold, anomalous: scored.scores[k] >= threshold, anomalyMap: png });
      }
    } finally {
      await stages.dispose();
    }
  }
  // Unreadable images first, as before; their threshold is the one the others were decided with (null when none could be read).
  const inferenceHash = settingsHash(inference);
  return [
    ...failed.map((f) => ({ ...f, score: null, threshold, anomalous: null, anomalyMap: null, inferenceHash })),
    ...out.map((p) => ({ ...p, inferenceHash })),
  ];
}
