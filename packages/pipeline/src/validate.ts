/**
 * Validation that can choose: the normal validation images (carved from train) plus a defective
 * copy of each made by `@diad/datasets`' defect synthesiser (exact masks), scored like the test
 * split, so the seven metrics rank checkpoints and settings without ever touching the test split.
 * Also measures, per class on the normal images, how well the model reconstructs: the
 * autoencoder's round trip and the full DiAD reconstruction (pixel L1 and feature distance).
 */
import { concatBatch, ddimVisitedSteps, mask, scoreImages, sliceBatch, type Autoencoder, type HostTensor, type Stages } from '@diad/core';
import { ddimOptionsSchema } from '@diad/sg-diffusion';
import { DEFECT_KINDS, SELF_CONTAINED_KINDS, synthesizeDefects, type DefectKind } from '@diad/datasets';
import { MetricsAccumulator, type MetricValues } from '@diad/metrics';
import type { DefectsConfig, InferenceConfig, RunConfig } from './config.js';
import type { Decoded } from './data.js';

/** The validation images: normal ones and `copies` synthesised defective copies of each. */
export interface ValidationSet {
  /** Class of each normal image. */
  classes: string[];
  paths: string[];
  /** `[N, 3, S, S]` normal images (ImageNet-normalised). */
  normal: HostTensor;
  /** `[N * copies, 3, S, S]` defective copies: copy `k` of normal image `i` at index `k * N + i`. */
  defective: HostTensor;
  /** `[N * copies, 1, S, S]` exact defect masks. */
  masks: HostTensor<'uint8'>;
  /** Class of each defective image (its defect kind is in `kinds`). */
  defectiveClasses: string[];
  kinds: DefectKind[];
}

/**
 * Builds the validation set: each normal image gets `copies` synthetic defects (`validation.defects`
 * of the run config, {@link DefectsConfig}; a missing field: 1), one per copy (kinds
 * cycled, shifted by one kind per copy; donors for cut-paste and texture blends are the other
 * validation images), seeded by the run's seed (copy `k` by `seed + k`, so copy 0 is the set a
 * run without `defects` gets).
 * @throws Error from `synthesizeDefects` for a bad scale or contrast.
 */
export function validationSet(val: Decoded, seed: number, defects: Partial<DefectsConfig> = {}): ValidationSet {
  const copies = defects.copies ?? 1;
  const n = val.images.shape[0];
  const base = n < 2 ? SELF_CONTAINED_KINDS : DEFECT_KINDS;
  const made = Array.from({ length: copies }, (_, k) =>
    synthesizeDefects(val.images, {
      seed: seed + k,
      kinds: [...base.slice(k % base.length), ...base.slice(0, k % base.length)],
      scale: defects.scale,
      contrast: defects.contrast,
    }),
  );
  const classes = val.samples.map((s) => s.className);
  const [, , h, w] = val.images.shape;
  return {
    classes,
    paths: val.samples.map((s) => s.imagePath),
    normal: val.images,
    defective: concatBatch(made.map((m) => m.images)),
    masks: mask(concatBytes(made.map((m) => m.masks.data)), [n * copies, 1, h, w]),
    defectiveClasses: made.flatMap(() => classes),
    kinds: made.flatMap((m) => m.kinds),
  };
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The seven metrics, fractions in [0, 1] (null where undefined). */
export type Metrics = MetricValues;

/** Reconstruction error of one class's normal validation images. */
export interface ReconstructionError {
  /** Mean |x - decode(encode(x))| of the autoencoder (posterior mode), ImageNet-normalised units. */
  autoencoderL1: number;
  /** Mean |x - DiAD reconstruction| (encode, noise to tStart, DDIM, decode), same units. */
  diadL1: number;
  /** Mean anomaly-map value (feature distance of input and DiAD reconstruction, blurred). */
  featureDistance: number;
}

/** One evaluation of the validation set. */
export interface ValidationPoint {
  /** Stage and step of the weights evaluated, and the DDIM start used (absent for another sampler). */
  stage: string;
  step: number;
  tStart?: number;
  /** Standard-mode metrics per class and mean over classes. */
  classes: Record<string, Metrics>;
  mean: Metrics;
  reconstruction: Record<string, ReconstructionError>;
  /** The selection value (see {@link selectionValue}). */
  value: number;
  /** Image scores of the normal images (the decision threshold comes from these). */
  normalScores: number[];
  /** Median anomaly-map value of the normal images (the heatmap colour floor). */
  mapMedian: number;
  seconds: number;
}

/**
 * The rule that picks a checkpoint: the mean of the class-mean image AUROC and pixel AUROC on the
 * validation set (standard mode); a later checkpoint wins ties.
 */
export const SELECTION_RULE =
  'mean of image AUROC and pixel AUROC (class means, standard mode) on normal + synthesised-defect validation images; ties go to the later checkpoint';

/** The value {@link SELECTION_RULE} maximises. */
export function selectionValue(mean: Metrics): number {
  return ((mean.aurocImage ?? 0) + (mean.aurocPixel ?? 0)) / 2;
}

/**
 * Scores the validation set with `stages` and computes the seven metrics per class and mean, and
 * the reconstruction errors of the normal images.
 * @param seed seed of the DDIM noise (each image draws its own).
 */
export async function evaluateValidation(
  stages: Stages,
  set: ValidationSet,
  settings: InferenceConfig,
  seed: number,
  where: { stage: string; step: number },
): Promise<ValidationPoint> {
  const tStart = ddimStart(settings);
  const t0 = Date.now();
  const normal = await scoreImages(stages, set.normal, settings, seed);
  const defective = await scoreImages(stages, set.defective, settings, seed);
  const size = set.normal.shape[2];
  const hw = size * size;
  const acc = new MetricsAccumulator();
  for (let i = 0; i < set.classes.length; i++) {
    acc.add(set.classes[i], normal.maps.data.subarray(i * hw, (i + 1) * hw), null, { height: size, width: size, label: 0, defectType: 'good', copy: false });
  }
  for (let i = 0; i < set.defectiveClasses.length; i++) {
    acc.add(set.defectiveClasses[i], defective.maps.data.subarray(i * hw, (i + 1) * hw), set.masks.data.subarray(i * hw, (i + 1) * hw), {
      height: size,
      width: size,
      label: 1,
      defectType: set.kinds[i],
      copy: false,
    });
  }
  const report = acc.compute({ mode: 'standard' });
  const classes = Object.fromEntries(Object.entries(report.classes).map(([c, r]) => [c, r.values]));
  const aeL1 = await autoencoderL1PerImage(stages.autoencoder, set.normal, settings.batchSize);
  const reconstruction: Record<string, ReconstructionError> = {};
  for (const c of [...new Set(set.classes)]) {
    const idx = set.classes.flatMap((k, i) => (k === c ? [i] : []));
    reconstruction[c] = {
      autoencoderL1: meanOf(idx.map((i) => aeL1[i])),
      diadL1: meanOf(idx.map((i) => meanAbsDiff(set.normal, normal.reconstructions, i))),
      featureDistance: meanOf(idx.map((i) => meanOf(normal.maps.data.subarray(i * hw, (i + 1) * hw)))),
    };
  }
  return {
    ...where,
    ...(tStart !== undefined ? { tStart } : {}),
    classes,
    mean: report.mean.values,
    reconstruction,
    value: selectionValue(report.mean.values),
    normalScores: normal.scores,
    mapMedian: medianSample(normal.maps.data),
    seconds: (Date.now() - t0) / 1000,
  };
}

/** The DDIM start of inference settings, or undefined for another sampler. */
export function ddimStart(settings: InferenceConfig): number | undefined {
  const r = settings.reconstructor;
  return r.kind === 'ddim' && typeof r.tStart === 'number' ? r.tStart : undefined;
}

/**
 * Model evaluations per reconstruction of DDIM settings: the DDIM timesteps visited (fewer than its
 * steps when the partial schedule starts low), or null for another sampler.
 */
export function ddimVisits(settings: InferenceConfig): number | null {
  const { kind, ...options } = settings.reconstructor;
  const parsed = kind === 'ddim' ? ddimOptionsSchema.safeParse(options) : null;
  return parsed?.success ? ddimVisitedSteps(parsed.data) : null;
}

/** The settings with another DDIM start. */
export function withDdimStart(settings: InferenceConfig, tStart: number): InferenceConfig {
  return { ...settings, reconstructor: { ...settings.reconstructor, tStart } };
}

/**
 * The inference settings a fitted run uses by default: its config's, with the DDIM start that
 * validation chose (when the fit swept `validation.tStarts`).
 */
export function runInference(cfg: RunConfig, validation: { tStart?: number }): InferenceConfig {
  return validation.tStart === undefined ? cfg.inference : withDdimStart(cfg.inference, validation.tStart);
}

/** Per-image mean |x - decode(encode(x))| of the autoencoder (posterior mode) over images `[N, 3, H, W]`. */
export async function autoencoderL1PerImage(ae: Autoencoder, images: HostTensor, batch: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < images.shape[0]; i += batch) {
    const x = sliceBatch(images, i, Math.min(images.shape[0], i + batch));
    const y = await ae.decode(await ae.encode(x));
    for (let k = 0; k < x.shape[0]; k++) out.push(meanAbsDiff(x, y, k));
  }
  return out;
}

/** Mean |a - b| over image `i` of two `[N, ...]` tensors of one shape. */
function meanAbsDiff(a: HostTensor, b: HostTensor, i: number): number {
  const per = a.data.length / a.shape[0];
  let s = 0;
  for (let k = i * per; k < (i + 1) * per; k++) s += Math.abs(a.data[k] - b.data[k]);
  return s / per;
}

function meanOf(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return v.length ? s / v.length : NaN;
}

/** Median of up to 100k evenly spaced values (the typical normal pixel score). */
export function medianSample(v: Float32Array): number {
  const stride = Math.max(1, Math.floor(v.length / 100_000));
  const xs: number[] = [];
  for (let i = 0; i < v.length; i += stride) xs.push(v[i]);
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}

/** One line per class and the mean: metrics (%) and reconstruction errors, for logs and notes. */
export function formatValidation(p: ValidationPoint): string[] {
  const pct = (v: number | null) => (v === null ? '  -  ' : (100 * v).toFixed(1).padStart(5));
  const lines = [`${'class'.padEnd(16)} imgAUROC pixAUROC AU-PRO | AE L1  DiAD L1 feat.dist`];
  for (const [c, m] of Object.entries(p.classes)) {
    const r = p.reconstruction[c];
    lines.push(
      `${c.padEnd(16)} ${pct(m.aurocImage)}    ${pct(m.aurocPixel)}    ${pct(m.auPro)} | ${r.autoencoderL1.toFixed(4)} ${r.diadL1.toFixed(4)} ${r.featureDistance.toFixed(4)}`,
    );
  }
  lines.push(`${'mean'.padEnd(16)} ${pct(p.mean.aurocImage)}    ${pct(p.mean.aurocPixel)}    ${pct(p.mean.auPro)}`);
  return lines;
}
