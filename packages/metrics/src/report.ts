/**
 * Result types, the seven-column table of the field, and the official DiAD metric keys.
 */

/** `standard`: scikit-learn / MVTec AD definitions. `diad`: the official DiAD evaluation. */
export type Mode = 'standard' | 'diad';

/** The seven metrics of one class (or of a defect type, or the mean). null = undefined, see `reasons`. */
export interface MetricValues {
  /** Image AUROC (column mAU-ROC_I). */
  aurocImage: number | null;
  /** Image average precision (mAP_I). */
  apImage: number | null;
  /** Image F1-max (mF1-max_I). */
  f1MaxImage: number | null;
  /** Pixel AUROC (mAU-ROC_P). */
  aurocPixel: number | null;
  /** Pixel average precision (mAP_P). */
  apPixel: number | null;
  /** Pixel F1-max (mF1-max_P). */
  f1MaxPixel: number | null;
  /** Pixel AU-PRO (mAU-PRO). */
  auPro: number | null;
}

export type MetricName = keyof MetricValues;

/** Metric names in table order. */
export const METRIC_NAMES: readonly MetricName[] = [
  'aurocImage',
  'apImage',
  'f1MaxImage',
  'aurocPixel',
  'apPixel',
  'f1MaxPixel',
  'auPro',
];

/** Column headers of the seven-column table, in the order of {@link METRIC_NAMES}. */
export const TABLE_COLUMNS: Readonly<Record<MetricName, string>> = {
  aurocImage: 'mAU-ROC_I',
  apImage: 'mAP_I',
  f1MaxImage: 'mF1-max_I',
  aurocPixel: 'mAU-ROC_P',
  apPixel: 'mAP_P',
  f1MaxPixel: 'mF1-max_P',
  auPro: 'mAU-PRO',
};

/**
 * The metric names of the official evaluation (`utils/eval_helper.eval_lookup_table`), which
 * reports them as `<class>_<name>_auc` and `mean_<name>_auc`.
 */
export const OFFICIAL_METRIC_KEYS: Readonly<Record<string, MetricName>> = {
  max: 'aurocImage',
  apsp: 'apImage',
  f1sp: 'f1MaxImage',
  pixel: 'aurocPixel',
  appx: 'apPixel',
  f1px: 'f1MaxPixel',
  pro: 'auPro',
};

/** Metrics of one set of images with the reason for every null value. */
export interface MetricsRow {
  values: MetricValues;
  /** Why a value is null (only keys whose value is null). */
  reasons: Partial<Record<MetricName, string>>;
  images: number;
  anomalousImages: number;
  pixels: number;
  defectPixels: number;
  /** Ground-truth regions (8-connected) over all masks. */
  regions: number;
  /** F1-max operating points (predict anomalous when score >= threshold), null when undefined. */
  f1Thresholds: { image: number | null; pixel: number | null };
}

/** One class: its row plus, when asked, one row per defect type (its images + all normal images). */
export interface ClassReport extends MetricsRow {
  defectTypes: Record<string, MetricsRow>;
}

/** The result of MetricsAccumulator.compute. */
export interface MetricsReport {
  mode: Mode;
  /** `standard` AU-PRO integration limit; `diad` always keeps FPR < 0.3. */
  fprLimit: number;
  /** Number of AU-PRO thresholds in `diad` mode (200 officially); null in `standard`. */
  proThresholds: number | null;
  /** Classes in the order they were first added. */
  classes: Record<string, ClassReport>;
  /** Unweighted mean over classes; null where any class is null (reason names the classes). */
  mean: { values: MetricValues; reasons: Partial<Record<MetricName, string>> };
}

/** The official key / value map (`<class>_<name>_auc`, `mean_<name>_auc`) of a report. */
export function toOfficialKeys(report: MetricsReport): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const [key, name] of Object.entries(OFFICIAL_METRIC_KEYS)) {
    for (const [cls, row] of Object.entries(report.classes)) out[`${cls}_${key}_auc`] = row.values[name];
    out[`mean_${key}_auc`] = report.mean.values[name];
  }
  return out;
}

/**
 * Markdown table: one row per class, then the mean; optional per-defect-type rows under each
 * class. Values in percent with `digits` decimals; undefined values print as "n/a".
 */
export function formatTable(report: MetricsReport, options: { digits?: number; defectTypes?: boolean } = {}): string {
  const digits = options.digits ?? 1;
  const fmt = (v: number | null): string => (v === null ? 'n/a' : (100 * v).toFixed(digits));
  const line = (name: string, values: MetricValues): string =>
    `| ${name} | ${METRIC_NAMES.map((k) => fmt(values[k])).join(' | ')} |`;
  const lines = [
    `| class (${report.mode}) | ${METRIC_NAMES.map((k) => TABLE_COLUMNS[k]).join(' | ')} |`,
    `|---|${METRIC_NAMES.map(() => '---').join('|')}|`,
  ];
  for (const [cls, row] of Object.entries(report.classes)) {
    lines.push(line(cls, row.values));
    if (options.defectTypes) for (const [d, r] of Object.entries(row.defectTypes)) lines.push(line(`${cls} / ${d}`, r.values));
  }
  lines.push(line('mean', report.mean.values));
  return lines.join('\n');
}
