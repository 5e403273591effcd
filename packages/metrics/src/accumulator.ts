/**
 * Streaming evaluation: add anomaly maps image by image, per class, then compute the seven
 * metrics per class, per defect type and their mean, in `standard` and/or `diad` mode.
 */
import { binsFromScores, type RankBins } from './bins.js';
import { binaryMetrics, diadAuPro, diadProThresholds, standardAuPro } from './curve.js';
import { MetricsInputError, UndefinedMetricError } from './errors.js';
import { diadImageScore, maxImageScore } from './image-score.js';
import { pixelBins, type StoredImage } from './pixels.js';
import { METRIC_NAMES, type ClassReport, type MetricName, type MetricValues, type MetricsReport, type MetricsRow, type Mode } from './report.js';

/** Per-image options of {@link MetricsAccumulator.add}. */
export interface AddOptions {
  /** Map height in pixels (rows). */
  height: number;
  /** Map width in pixels (columns). */
  width: number;
  /** Defect type (MVTec sub-folder, e.g. "broken_large"); used for the per-defect-type rows. */
  defectType?: string;
  /**
   * Image label, 1 anomalous / 0 normal. Default: 1 when the mask has a defective pixel (what the
   * official evaluation does). Give 1 for an anomalous image whose mask is empty.
   */
  label?: 0 | 1;
  /** Copy the map (default true). false keeps a reference: the caller must not change it afterwards. */
  copy?: boolean;
}

/** Options of {@link MetricsAccumulator.compute}. */
export interface ComputeOptions {
  /** Default 'standard'. */
  mode?: Mode;
  /** `standard` AU-PRO FPR integration limit in (0, 1], default 0.3. */
  fprLimit?: number;
  /** `diad` AU-PRO threshold count, default 200 (official). */
  proThresholds?: number;
  /** Also compute one row per defect type (that type's images plus all normal images). Default false. */
  byDefectType?: boolean;
}

type StoredWithScore = StoredImage & { diadScore?: number };

/**
 * Collects per-class anomaly maps and masks in compact typed arrays (one Float32Array map and at
 * most one Uint8Array mask per image, never an object per pixel) and computes exact metrics.
 *
 * Memory: 4 bytes per pixel for the maps, 1 byte per pixel of images with a defect, and at
 * compute time 16 bytes per defective pixel of the class being computed.
 */
export class MetricsAccumulator {
  private readonly store = new Map<string, StoredWithScore[]>();
  private poolScratch = new Float64Array(0);

  /**
   * Add one test image.
   * @param className the object class (e.g. "bottle").
   * @param map row-major `height x width` anomaly map, higher = more anomalous, finite values.
   * @param mask row-major `height x width` ground truth, nonzero = defective pixel; null = no defect.
   * @throws MetricsInputError on a shape mismatch, a NaN or infinite score, or a label that
   *   contradicts the mask.
   */
  add(className: string, map: Float32Array, mask: Uint8Array | null, options: AddOptions): void {
    const where = `class "${className}", image ${this.store.get(className)?.length ?? 0}`;
    if (typeof className !== 'string' || className === '') throw new MetricsInputError('className must be a non-empty string');
    const image: StoredWithScore = storeImage(where, map, mask, options);
    let list = this.store.get(className);
    if (!list) this.store.set(className, (list = []));
    list.push(image);
  }

  /** Class names in the order they were first added. */
  get classNames(): string[] {
    return [...this.store.keys()];
  }

  /** Number of images added to a class (0 for an unknown class). */
  imageCount(className: string): number {
    return this.store.get(className)?.length ?? 0;
  }

  /**
   * Image scores of a class in insertion order: `standard` = max of the map; `diad` = max after
   * eight 8x8 stride-1 average poolings (see diadImageScore).
   * @throws MetricsInputError for an unknown class or (diad) a map smaller than 57x57.
   */
  imageScores(className: string, mode: Mode): Float64Array {
    const list = this.images(className);
    return Float64Array.from(list, (im) => this.imageScore(im, mode));
  }

  /** Image labels (1 anomalous) of a class in insertion order. */
  imageLabels(className: string): Uint8Array {
    return Uint8Array.from(this.images(className), (im) => im.label);
  }

  /** Compute the report of one mode. See {@link computeAll}. */
  compute(options: ComputeOptions = {}): MetricsReport {
    const mode = options.mode ?? 'standard';
    return this.computeAll([mode], options)[mode]!;
  }

  /**
   * Compute the reports of several modes, sharing the pixel ranking between them.
   * @throws MetricsInputError when nothing was added or an option is out of range.
   */
  computeAll(modes: readonly Mode[], options: Omit<ComputeOptions, 'mode'> = {}): Partial<Record<Mode, MetricsReport>> {
    const fprLimit = options.fprLimit ?? 0.3;
    const proThresholds = options.proThresholds ?? 200;
    if (!(fprLimit > 0 && fprLimit <= 1)) throw new MetricsInputError(`fprLimit must be in (0, 1], got ${fprLimit}`);
    if (!Number.isInteger(proThresholds) || proThresholds < 2) throw new MetricsInputError(`proThresholds must be an integer >= 2, got ${proThresholds}`);
    if (this.store.size === 0) throw new MetricsInputError('no image was added; call add() before compute()');
    for (const m of modes) if (m !== 'standard' && m !== 'diad') throw new MetricsInputError(`unknown mode "${String(m)}"; use "standard" or "diad"`);
    const reports: Partial<Record<Mode, MetricsReport>> = {};
    for (const mode of modes) {
      reports[mode] = {
        mode,
        fprLimit: mode === 'standard' ? fprLimit : 0.3,
        proThresholds: mode === 'diad' ? proThresholds : null,
        classes: {},
        mean: { values: emptyValues(), reasons: {} },
      };
    }
    for (const [cls, list] of this.store) {
      const rows = this.rows(list, modes, fprLimit, proThresholds);
      const typeRows: Record<string, Partial<Record<Mode, MetricsRow>>> = {};
      if (options.byDefectType) {
        const normals = list.filter((im) => im.label === 0);
        const types = [...new Set(list.filter((im) => im.label === 1 && im.defectType !== null).map((im) => im.defectType!))];
        for (const d of types) {
          typeRows[d] = this.rows([...normals, ...list.filter((im) => im.label === 1 && im.defectType === d)], modes, fprLimit, proThresholds);
        }
      }
      for (const mode of modes) {
        const defectTypes: Record<string, MetricsRow> = {};
        for (const [d, r] of Object.entries(typeRows)) defectTypes[d] = r[mode]!;
        reports[mode]!.classes[cls] = { ...rows[mode]!, defectTypes } satisfies ClassReport;
      }
    }
    for (const mode of modes) reports[mode]!.mean = meanRow(reports[mode]!.classes);
    return reports;
  }

  private images(className: string): StoredWithScore[] {
    const list = this.store.get(className);
    if (!list) throw new MetricsInputError(`unknown class "${className}"; known: ${this.classNames.join(', ') || 'none'}`);
    return list;
  }

  private imageScore(im: StoredWithScore, mode: Mode): number {
    if (mode === 'standard') return maxImageScore(im.map);
    if (im.diadScore === undefined) {
      if (this.poolScratch.length < im.map.length) this.poolScratch = new Float64Array(im.map.length);
      im.diadScore = diadImageScore(im.map, im.height, im.width, this.poolScratch);
    }
    return im.diadScore;
  }

  /** The rows of one image set for every mode. */
  private rows(images: StoredWithScore[], modes: readonly Mode[], fprLimit: number, proThresholds: number): Partial<Record<Mode, MetricsRow>> {
    const labels = Uint8Array.from(images, (im) => im.label);
    let pixels = 0,
      defectPixels = 0,
      min = Infinity,
      max = -Infinity;
    for (const im of images) {
      pixels += im.map.length;
      defectPixels += im.defectPixels;
      min = Math.min(min, im.min);
      max = Math.max(max, im.max);
    }
    // Pixel ranking, shared by the modes (diad's thresholds are extra, harmless boundaries).
    let thresholds: Float64Array | null = null;
    let thresholdReason: string | null = null;
    if (modes.includes('diad')) {
      try {
        thresholds = diadProThresholds(min, max, proThresholds);
      } catch (e) {
        if (!(e instanceof UndefinedMetricError)) throw e;
        thresholdReason = e.reason;
      }
    }
    const bins: RankBins | null = defectPixels > 0 ? pixelBins(images, thresholds) : null;
    const out: Partial<Record<Mode, MetricsRow>> = {};
    for (const mode of modes) {
      const values = emptyValues();
      const reasons: Partial<Record<MetricName, string>> = {};
      const f1Thresholds: MetricsRow['f1Thresholds'] = { image: null, pixel: null };
      const flip = (a: number): number => (mode === 'diad' && a < 0.5 ? 1 - a : a);
      const fail = (names: MetricName[], e: unknown): void => {
        if (!(e instanceof UndefinedMetricError || e instanceof MetricsInputError)) throw e;
        for (const k of names) reasons[k] = e.message;
      };
      try {
        const scores = Float64Array.from(images, (im) => this.imageScore(im, mode));
        const r = binaryMetrics(binsFromScores(scores, labels));
        values.aurocImage = flip(r.auroc);
        values.apImage = r.ap;
        values.f1MaxImage = r.f1Max;
        f1Thresholds.image = r.f1Threshold;
      } catch (e) {
        fail(['aurocImage', 'apImage', 'f1MaxImage'], e);
      }
      try {
        if (!bins) throw new UndefinedMetricError('no defective pixel in any mask: pixel metrics are undefined');
        const r = binaryMetrics(bins);
        values.aurocPixel = flip(r.auroc);
        values.apPixel = r.ap;
        values.f1MaxPixel = r.f1Max;
        f1Thresholds.pixel = r.f1Threshold;
      } catch (e) {
        fail(['aurocPixel', 'apPixel', 'f1MaxPixel'], e);
      }
      try {
        if (!bins) throw new UndefinedMetricError('no defective pixel in any mask: AU-PRO is undefined');
        if (mode === 'standard') values.auPro = standardAuPro(bins, fprLimit);
        else if (thresholdReason) throw new UndefinedMetricError(thresholdReason);
        else values.auPro = diadAuPro(bins, thresholds!.length);
      } catch (e) {
        fail(['auPro'], e);
      }
      out[mode] = {
        values,
        reasons,
        images: images.length,
        anomalousImages: labels.reduce((a, b) => a + b, 0),
        pixels,
        defectPixels,
        regions: bins?.K ?? 0,
        f1Thresholds,
      };
    }
    return out;
  }
}

/**
 * Validate one image and turn it into the stored form (map copied unless `copy: false`, -0 made
 * +0, mask kept only when it has a defective pixel).
 * @param where names the image in error messages.
 * @throws MetricsInputError on shape mismatch, non-finite scores, or a label contradicting the mask.
 */
export function storeImage(where: string, map: Float32Array, mask: Uint8Array | null, options: AddOptions): StoredImage {
  const { height, width } = options;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
    throw new MetricsInputError(`${where}: height and width must be positive integers, got ${height}x${width}`);
  }
  if (!(map instanceof Float32Array)) throw new MetricsInputError(`${where}: the anomaly map must be a Float32Array`);
  const n = height * width;
  if (map.length !== n) {
    throw new MetricsInputError(
      `${where}: the anomaly map has ${map.length} values but the shape is ${height}x${width} (${n}); maps and masks must have the same shape`,
    );
  }
  if (mask !== null && !(mask instanceof Uint8Array)) {
    throw new MetricsInputError(`${where}: the mask must be a Uint8Array (nonzero = defective) or null; convert float masks with mask > 0`);
  }
  if (mask !== null && mask.length !== n) {
    throw new MetricsInputError(
      `${where}: the mask has ${mask.length} values but the anomaly map has ${height}x${width} (${n}); they must have the same shape`,
    );
  }
  const stored = options.copy === false ? map : new Float32Array(map);
  let min = Infinity,
    max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = stored[i];
    if (v - v !== 0)
      throw new MetricsInputError(`${where}: pixel ${i} (row ${Math.floor(i / width)}, column ${i % width}) has score ${v}; anomaly maps must be finite`);
    if (v === 0) stored[i] = 0; // -0 and +0 are one score
    if (v < min) min = v;
    if (v > max) max = v;
  }
  let defectPixels = 0;
  if (mask) for (let i = 0; i < n; i++) if (mask[i] !== 0) defectPixels++;
  const label = options.label ?? (defectPixels > 0 ? 1 : 0);
  if (label === 0 && defectPixels > 0) {
    throw new MetricsInputError(`${where}: labelled normal (0) but its mask has ${defectPixels} defective pixels`);
  }
  if (label !== 0 && label !== 1) throw new MetricsInputError(`${where}: label must be 0 or 1, got ${String(label)}`);
  return {
    map: stored,
    mask: defectPixels > 0 ? new Uint8Array(mask!) : null,
    height,
    width,
    label,
    defectType: options.defectType ?? null,
    defectPixels,
    min: min === 0 ? 0 : min,
    max: max === 0 ? 0 : max,
  };
}

function emptyValues(): MetricValues {
  return { aurocImage: null, apImage: null, f1MaxImage: null, aurocPixel: null, apPixel: null, f1MaxPixel: null, auPro: null };
}

/** Unweighted mean over classes; null (with the classes named) when any class is undefined. */
function meanRow(classes: Record<string, ClassReport>): MetricsReport['mean'] {
  const values = emptyValues();
  const reasons: Partial<Record<MetricName, string>> = {};
  const names = Object.keys(classes);
  for (const k of METRIC_NAMES) {
    const missing = names.filter((c) => classes[c].values[k] === null);
    if (missing.length > 0) {
      reasons[k] = `undefined for class${missing.length > 1 ? 'es' : ''} ${missing.join(', ')}`;
    } else {
      values[k] = names.reduce((a, c) => a + classes[c].values[k]!, 0) / names.length;
    }
  }
  return { values, reasons };
}
