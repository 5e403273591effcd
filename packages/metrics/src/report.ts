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
export const METRIC_NAMES: readonly MetricName[] = ['aurocImage', 'apImage', 'f1MaxImage', 'aurocPixel', 'apPixel', 'f1MaxPixel', 'auPro'];

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

/** Human-readable headers of the seven metrics, in the order of {@link METRIC_NAMES}. */
export const METRIC_LABELS: Readonly<Record<MetricName, string>> = {
  aurocImage: 'image AUROC',
  apImage: 'image AP',
  f1MaxImage: 'image F1-max',
  aurocPixel: 'pixel AUROC',
  apPixel: 'pixel AP',
  f1MaxPixel: 'pixel F1-max',
  auPro: 'AU-PRO',
};

/** A metric in percent with `digits` decimals; "n/a" where undefined (null). */
export function formatPercent(v: number | null, digits = 1): string {
  return v === null ? 'n/a' : (100 * v).toFixed(digits);
}

/** One row of {@link metricTable}: leading cells (class, variant...), the seven values, trailing cells. */
export interface TableRow {
  cells: string[];
  values: MetricValues;
  extra?: string[];
}

/**
 * The one Markdown metric table every printer uses (`formatTable`, `diad test`, `diad ablate`):
 * leading columns, the seven metrics in percent ({@link METRIC_LABELS}), trailing columns.
 */
export function metricTable(rows: readonly TableRow[], options: { lead: string[]; extra?: string[]; digits?: number }): string {
  const extra = options.extra ?? [];
  const cols = [...options.lead, ...METRIC_NAMES.map((k) => METRIC_LABELS[k]), ...extra];
  const lines = [`| ${cols.join(' | ')} |`, `|${options.lead.map(() => '---').join('|')}|${[...METRIC_NAMES, ...extra].map(() => '---:').join('|')}|`];
  for (const r of rows)
    lines.push(`| ${[...r.cells, ...METRIC_NAMES.map((k) => formatPercent(r.values[k], options.digits)), ...(r.extra ?? [])].join(' | ')} |`);
  return lines.join('\n');
}

/**
 * Markdown table of a report: one row per class, then the mean; optional per-defect-type rows under
 * each class. Values in percent with `digits` decimals; undefined values print as "n/a".
 */
export function formatTable(report: MetricsReport, options: { digits?: number; defectTypes?: boolean } = {}): string {
  const rows: TableRow[] = [];
  for (const [cls, row] of Object.entries(report.classes)) {
    rows.push({ cells: [cls], values: row.values });
    if (options.defectTypes) for (const [d, r] of Object.entries(row.defectTypes)) rows.push({ cells: [`${cls} / ${d}`], values: r.values });
  }
  rows.push({ cells: ['mean'], values: report.mean.values });
  return metricTable(rows, { lead: [`class (${report.mode})`], digits: options.digits });
}
