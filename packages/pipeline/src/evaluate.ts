/**
 * `diad test`: reconstruction of the test images, anomaly maps, the seven metrics per class and
 * mean in both modes (@diad/metrics), a PNG strip per image and the report, with the run's
 * inference settings or others (`settings`). Nothing is tuned on the test split: the heatmap colour
 * range comes from the validation images.
 */
import { join, resolve } from 'node:path';
import { existsSync, promises as fs } from 'node:fs';
import { scoreImages, sliceBatch } from '@diad/core';
import { openDataset, type Sample } from '@diad/datasets';
import { MetricsAccumulator, type StoredImage } from '@diad/metrics';
import { STAGES, type RunDir } from './run-dir.js';
import { capPerClass, decodeSamples, sampleId, type Decoded, type Skipped } from './data.js';
import { ddimStart, ddimVisits } from './validate.js';
import { calibrate, readValidation, resolveSettings, checkSettings, settingsHash, type Calibration } from './settings.js';
import type { DefectsConfig, InferenceConfig, RunConfig } from './config.js';
import { openInference, type EngineOptions } from './inference.js';
import { Progress } from './progress.js';
import type { ValidationCurve, ValidationInfo } from './fit.js';
import { runCheckpoints } from './export.js';
import { diadVersions } from './versions.js';
import { writeStrip } from './report/strip.js';
import { writeReport } from './report/index.js';
import { classCurves, storedImage } from './report/curves.js';
import { METRIC_MODES, type ClassReport, type ImageRecord, type ReportInput } from './report/types.js';

export interface TestOptions extends EngineOptions {
  /** Inference settings (default: the run's, see `resolveSettings`). */
  settings?: InferenceConfig;
  /** Replace a test result already in the output folder (default: refuse). */
  overwrite?: boolean;
  /** Dataset roots to test on (default: the run's roots). */
  roots?: string[];
  classes?: string[] | null;
  /** Output folder (default `<run>/test`). */
  out?: string;
  quiet?: boolean;
  log?: (l: string) => void;
}

/** One scored test image: what the metrics and the report need of it. */
export interface ScoredImage {
  /** Position in the test set's sample order (what shards are merged by). */
  index: number;
  className: string;
  defect: string;
  label: 0 | 1;
  /** `H*W` anomaly map. */
  map: Float32Array;
  /** `H*W` ground truth, null for a good image. */
  mask: Uint8Array | null;
  record: ImageRecord;
}

/** The files that mark a folder as holding a test result or a test shard. */
const RESULT_FILES = ['metrics.json', 'shard.json'];

/** What a test is run with: the run's validation, the settings, the output folder, the test set. */
export interface TestContext {
  run: RunDir;
  validation: ValidationInfo;
  settings: InferenceConfig;
  out: string;
  test: TestSet;
}

/** What scored a test: engine, feature extractor and the threshold and heatmap range of the settings. */
export interface TestScoring {
  engine: string;
  featureProvenance: string;
  calibration: Calibration;
}

/**
 * Checks the settings and the output folder and opens the test set, before any scoring.
 * @param marker the file whose presence means the folder already holds a result.
 * @throws Error for bad settings, an unfitted run, or a folder that holds a result (without `overwrite`).
 */
export async function prepareTest(run: RunDir, opts: TestOptions, marker: string, log: (l: string) => void): Promise<TestContext> {
  const validation = await readValidation(run);
  const settings = opts.settings ?? resolveSettings(run, validation);
  await checkSettings(settings);
  const out = resolve(opts.out ?? run.path('test'));
  // One test (or shard) per folder: a second one would mix its strips with the first's and replace its results.
  const held = RESULT_FILES.filter((f) => existsSync(join(out, f)));
  if (held.length) {
    if (!opts.overwrite || !held.includes(marker) || held.length > 1) {
      throw new Error(
        `${out} already holds a ${held.includes('shard.json') ? 'test shard (shard.json)' : 'test result (metrics.json)'}; write this ${marker === 'shard.json' ? 'shard' : 'test'} elsewhere with --out DIR${held.length === 1 && held[0] === marker ? ', or replace it with --overwrite' : ''}`,
      );
    }
    await fs.rm(join(out, 'strips'), { recursive: true, force: true });
  }
  return { run, validation, settings, out, test: await openTestSet(run, validation, opts, log) };
}

/**
 * Scores test samples (each with its index in the test set) and writes their strips.
 * @returns the scored images in sample order, the unreadable ones, and what scored them.
 */
export async function scoreTestSamples(
  ctx: TestContext,
  samples: readonly { sample: Sample; index: number }[],
  opts: TestOptions,
  log: (l: string) => void,
): Promise<{ scored: ScoredImage[]; skipped: Skipped[]; scoring: TestScoring }> {
  const { run, validation, settings, out } = ctx;
  const cfg = run.config;
  const stages = await openInference(run, settings, opts, log);
  log(`engine: ${stages.engine}`);
  const calibration = await calibrate(run, validation, settings, stages, log).catch(async (e) => {
    await stages.dispose();
    throw e;
  });
  const indexOf = new Map(samples.map((s) => [s.sample, s.index]));
  const scored: ScoredImage[] = [];
  const size = cfg.data.imageSize;
  const hw = size * size;
  const t0 = Date.now();
  const progress = new Progress('test', samples.length, 0, opts.quiet, false);
  let skipped: Skipped[];
  try {
    skipped = await forEachTestChunk(
      samples.map((s) => s.sample),
      size,
      settings.batchSize,
      async (dec, done) => {
        const result = await scoreImages(stages, dec.images, settings, cfg.seed);
        for (let k = 0; k < dec.samples.length; k++) {
          const s = dec.samples[k];
          const map = result.maps.data.slice(k * hw, (k + 1) * hw) as Float32Array;
          const mask = s.label ? (dec.masks.data.slice(k * hw, (k + 1) * hw) as Uint8Array) : null;
          const id = sampleId(s);
          const strip = `strips/${id}.png`;
          await writeStrip(join(out, strip), {
            input: sliceBatch(dec.images, k, k + 1).data,
            reconstruction: sliceBatch(result.reconstructions, k, k + 1).data,
            map,
            mask,
            height: size,
            width: size,
            range: calibration.mapRange,
          });
          const record = { id, className: s.className, defectType: s.defect, label: s.label, path: s.imagePath, score: result.scores[k], strip };
          scored.push({ index: indexOf.get(s)!, className: s.className, defect: s.defect, label: s.label, map, mask, record });
        }
        progress.update(done, { ips: done / Math.max(1e-9, (Date.now() - t0) / 1000) });
      },
    );
  } finally {
    progress.stop();
    await stages.dispose();
  }
  return { scored, skipped, scoring: { engine: stages.engine, featureProvenance: stages.featureProvenance, calibration } };
}

/**
 * Tests a fitted run and writes `metrics.{json,md,csv}`, `strips/*.png` and `report.html`.
 * @returns the output folder and the report input (metrics, timings).
 * @throws Error when the run is not fitted (no `validation.json`), for bad settings, or a DatasetError.
 */
export async function testRun(run: RunDir, opts: TestOptions = {}): Promise<{ out: string; report: ReportInput }> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const t0 = Date.now();
  const ctx = await prepareTest(run, opts, 'metrics.json', log);
  const { scored, skipped, scoring } = await scoreTestSamples(
    ctx,
    ctx.test.samples.map((sample, index) => ({ sample, index })),
    opts,
    log,
  );
  const report = await writeTestReport(ctx, scoring, scored, skipped, (Date.now() - t0) / 1000);
  return { out: ctx.out, report };
}

/**
 * The seven metrics of scored images (added in sample order, so a merge of shards gives the
 * numbers of one run), the report input, and `metrics.*` and `report.html` in the output folder.
 * @throws Error when no image could be scored.
 */
export async function writeTestReport(
  ctx: TestContext,
  scoring: TestScoring,
  scoredImages: ScoredImage[],
  skipped: Skipped[],
  testSeconds: number,
): Promise<ReportInput> {
  const { run, validation, settings, out, test } = ctx;
  const { calibration } = scoring;
  const cfg = run.config;
  const { roots, unseen } = test;
  const size = cfg.data.imageSize;
  const scored = [...scoredImages].sort((a, b) => a.index - b.index);
  if (scored.length === 0) throw new Error(`no test image could be scored (${skipped.length} skipped)`);
  const acc = new MetricsAccumulator();
  const perClass = new Map<string, { scores: number[]; labels: number[]; stored: StoredImage[] }>();
  for (const s of scored) {
    acc.add(s.className, s.map, s.mask, { height: size, width: size, defectType: s.defect, label: s.label, copy: false });
    const c = perClass.get(s.className) ?? { scores: [], labels: [], stored: [] };
    c.scores.push(s.record.score);
    c.labels.push(s.label);
    c.stored.push(storedImage(s.map, s.mask, size, size, s.label, s.defect));
    perClass.set(s.className, c);
  }
  const images = scored.map((s) => s.record);
  const reports = acc.computeAll(METRIC_MODES, { byDefectType: false });
  const classReports: ClassReport[] = acc.classNames.map((name) => {
    const c = perClass.get(name)!;
    return {
      className: name,
      good: c.labels.filter((l) => l === 0).length,
      defective: c.labels.filter((l) => l === 1).length,
      metrics: { standard: reports.standard!.classes[name].values, diad: reports.diad!.classes[name].values },
      curves: classCurves(c.scores, c.labels, c.stored),
    };
  });
  const timings: ReportInput['timings'] = [];
  for (const st of STAGES) {
    const s = await run.readStage(st);
    if (s) timings.push({ name: `fit stage ${st} (${s.step} steps, ${s.imagesPerSecond.toFixed(2)} img/s)`, seconds: s.seconds });
  }
  const fitTimes = await run.readJson<{ dataSeconds: number; validationSeconds: number }>('fit-timings.json');
  if (fitTimes)
    timings.push({ name: 'fit: data loading', seconds: fitTimes.dataSeconds }, { name: 'fit: validation scoring', seconds: fitTimes.validationSeconds });
  timings.push({ name: `test (${images.length} images)`, seconds: testSeconds });
  const fitSkipped = (await run.readJson<Skipped[]>('skipped-fit.json')) ?? [];
  const curve = await run.readJson<ValidationCurve>('validation-curve.json');
  const date = new Date().toISOString();
  const provenance: ReportInput['provenance'] = {
    run: run.dir,
    configHash: run.hash,
    checkpoints: await runCheckpoints(run),
    dataRoots: roots,
    classes: [...test.classes],
    unseenClasses: unseen,
    engine: scoring.engine,
    featureExtractor: scoring.featureProvenance,
    inference: settings,
    inferenceHash: settingsHash(settings),
    versions: diadVersions(),
    date,
  };
  const report: ReportInput = {
    title: `DiAD report: ${run.dir}`,
    config: { ...cfg, inference: settings },
    configHash: run.hash,
    classes: classReports,
    mean: { standard: reports.standard!.mean.values, diad: reports.diad!.mean.values },
    images,
    timings,
    skipped: [...fitSkipped, ...skipped],
    ...(curve && validation.selected ? { validation: validationSummary(curve, validation.selected, cfg.validation?.defects) } : {}),
    facts: {
      ...(unseen.length ? { 'unseen classes (not trained on)': unseen.join(', ') } : {}),
      engine: scoring.engine,
      'feature extractor': scoring.featureProvenance,
      'test data': roots.join(', '),
      'test classes': test.classes.join(', '),
      sampler: describeSampler(settings),
      'anomaly map': describeAnomalyMap(settings),
      'inference settings hash': settingsHash(settings),
      checkpoints: Object.values(provenance.checkpoints).filter(Boolean).join(', ') || 'none',
      versions: Object.entries(provenance.versions)
        .map(([k, v]) => `${k} ${v ?? 'not installed'}`)
        .join(', '),
      'decision threshold (validation, target FPR)': `${calibration.threshold.toPrecision(5)} (${calibration.targetFpr}; ${calibration.source === 'fit' ? 'from the fit' : 'computed on the normal validation images for these settings'})`,
      ...(validation.autoencoderL1 !== undefined ? { 'autoencoder L1 on validation images': validation.autoencoderL1.toPrecision(4) } : {}),
      ...(validation.selected
        ? { 'model (chosen on validation)': `${validation.selected.stage} step ${validation.selected.step}, DDIM from t=${validation.selected.tStart}` }
        : {}),
      date,
    },
    provenance,
  };
  await writeReport(out, report);
  return report;
}

/** The sampler of settings in words, e.g. `ddim from t=300, 5 steps, eta 0, partial schedule`. */
export function describeSampler(settings: InferenceConfig): string {
  const r = settings.reconstructor;
  if (r.kind !== 'ddim') return `${r.kind} ${JSON.stringify({ ...r, kind: undefined })}`;
  const visited = ddimVisits(settings);
  // The partial schedule starts at the last DDIM timestep at or below tStart: say when that skips steps.
  const visits = visited !== null && visited !== r.steps ? ` (visits ${visited} of them from t=${ddimStart(settings)})` : '';
  return `DDIM from t=${ddimStart(settings)}, ${r.steps} steps${visits}, eta ${r.eta}, ${r.schedule} schedule`;
}

/** The anomaly-map settings in words, e.g. `sigma 4, add, levels 1,2`. */
export function describeAnomalyMap(settings: InferenceConfig): string {
  const m = settings.anomalyMap;
  const reference = m.reference === 'autoencoded' ? ', compared with the autoencoded input' : '';
  return `sigma ${m.sigma}, ${m.combine}${m.levels ? `, levels ${m.levels.join(',')}` : ', all levels'}${reference}`;
}

/** The test split of a run's data (or of other roots / classes), capped per class as the run says. */
export interface TestSet {
  roots: string[];
  classes: string[];
  samples: Sample[];
  /** Classes tested that the model was not trained on. */
  unseen: string[];
}

/**
 * Opens the test split: the run's roots and classes unless `o` names others.
 * @throws DatasetError naming the folder at fault.
 */
export async function openTestSet(
  run: RunDir,
  validation: ValidationInfo,
  o: { roots?: string[]; classes?: string[] | null },
  log: (l: string) => void,
): Promise<TestSet> {
  const cfg: RunConfig = run.config;
  const roots = o.roots?.length ? o.roots.map((r) => resolve(r)) : cfg.data.roots;
  const classes = o.classes ?? cfg.data.classes;
  const ds = await openDataset(roots, classes ? { classes } : {});
  const samples = capPerClass(
    ds.samples.filter((s) => s.split === 'test'),
    cfg.data.maxTestPerClass,
    cfg.seed + 1,
  );
  log(`test: ${samples.length} images of ${ds.classes.join(', ')}`);
  // A multi-class model is trained on a class list: testing other classes is an unseen-class experiment.
  const trained = validation.trainedClasses;
  const unseen = trained ? ds.classes.filter((c) => !trained.includes(c)) : [];
  if (unseen.length)
    log(`warning: the model was not trained on ${unseen.join(', ')} (trained on ${trained!.join(', ')}); the report marks this as an unseen-class test`);
  return { roots, classes: [...ds.classes], samples, unseen };
}

/**
 * Decodes test samples in chunks of four batches and hands each to `fn` (with the count done so
 * far). Test and ablate go through this one loop, so their batches, and so their numbers, agree.
 * @returns the images that could not be read.
 */
export async function forEachTestChunk(
  samples: Sample[],
  size: number,
  batchSize: number,
  fn: (dec: Decoded, done: number) => Promise<void>,
): Promise<Skipped[]> {
  const skipped: Skipped[] = [];
  const chunk = batchSize * 4;
  for (let i = 0; i < samples.length; i += chunk) {
    const dec = await decodeSamples(samples.slice(i, i + chunk), size, 'test').catch((e: Error) => {
      skipped.push(...samples.slice(i, i + chunk).map((s) => ({ path: s.imagePath, reason: e.message, split: 'test' as const })));
      return null;
    });
    if (!dec) continue;
    skipped.push(...dec.skipped);
    await fn(dec, Math.min(samples.length, i + chunk));
  }
  return skipped;
}

/** The report's view of the fit's validation curve and its chosen point. */
function validationSummary(
  curve: ValidationCurve,
  selected: NonNullable<ValidationInfo['selected']>,
  defects: DefectsConfig | undefined,
): NonNullable<ReportInput['validation']> {
  return {
    rule: curve.rule,
    ...(defects ? { defects } : {}),
    points: curve.points.map((p) => ({
      stage: p.stage,
      step: p.step,
      tStart: p.tStart,
      aurocImage: p.mean.aurocImage,
      aurocPixel: p.mean.aurocPixel,
      auPro: p.mean.auPro,
      value: p.value,
    })),
    selected: { stage: selected.stage, step: selected.step, tStart: selected.tStart },
    reconstruction: selected.reconstruction,
    classes: Object.fromEntries(Object.entries(selected.classes).map(([c, m]) => [c, { aurocImage: m.aurocImage, aurocPixel: m.aurocPixel, auPro: m.auPro }])),
  };
}
