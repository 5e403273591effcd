/**
 * The metric table in three forms: `metrics.json` (fractions, both modes, per class and mean),
 * `metrics.md` (percent, one table per mode) and `metrics.csv` (one row per mode and class); and
 * `scores.csv`, every test image's score.
 */
import { writeFileAtomic } from '@diad/core';
import { join } from 'node:path';
import { METRIC_NAMES, metricTable } from '@diad/metrics';
import { METRIC_MODES, type MetricRow, type ReportInput } from './types.js';
import type { Skipped, SplitName } from '../data.js';

/** Rows of one mode: each class, then `mean`. */
function rows(r: ReportInput, mode: (typeof METRIC_MODES)[number]): { name: string; row: MetricRow }[] {
  return [...r.classes.map((c) => ({ name: c.className, row: c.metrics[mode] })), { name: 'mean', row: r.mean[mode] }];
}

/** The metric tables as Markdown (percent, one decimal), @diad/metrics' one table. */
export function metricsMarkdown(r: ReportInput): string {
  return METRIC_MODES.map(
    (mode) =>
      `### ${mode} mode\n\n${metricTable(
        rows(r, mode).map(({ name, row }) => ({ cells: [name], values: row })),
        { lead: ['class'] },
      )}\n`,
  ).join('\n');
}

/** The metric table as CSV: `mode,class,<seven metrics>` with fractions to 6 decimals. */
export function metricsCsv(r: ReportInput): string {
  const lines = [`mode,class,${METRIC_NAMES.join(',')}`];
  for (const mode of METRIC_MODES)
    for (const { name, row } of rows(r, mode))
      lines.push(`${mode},${csvField(name)},${METRIC_NAMES.map((k) => (row[k] === null ? '' : row[k]!.toFixed(6))).join(',')}`);
  return lines.join('\n') + '\n';
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The JSON document: per mode, per class and mean, plus counts. */
export function metricsJson(r: ReportInput): unknown {
  return {
    configHash: r.configHash,
    modes: Object.fromEntries(
      METRIC_MODES.map((mode) => [mode, { classes: Object.fromEntries(r.classes.map((c) => [c.className, c.metrics[mode]])), mean: r.mean[mode] }]),
    ),
    counts: Object.fromEntries(r.classes.map((c) => [c.className, { good: c.good, defective: c.defective }])),
    skippedImages: skippedPerSplit(r.skipped),
    ...(r.validation ? { validation: r.validation } : {}),
    provenance: r.provenance,
  };
}

/** Every image's score as CSV: `id,class,defect,label,score,path` (score in full float64 precision), in test order. */
export function imageScoresCsv(r: ReportInput): string {
  const lines = ['id,class,defect,label,score,path'];
  for (const i of r.images) lines.push([i.id, i.className, i.defectType, String(i.label), String(i.score), i.path].map(csvField).join(','));
  return lines.join('\n') + '\n';
}

/** Writes `metrics.json`, `metrics.md`, `metrics.csv` and `scores.csv` into `dir` atomically. */
export async function writeMetricFiles(dir: string, r: ReportInput): Promise<void> {
  await writeFileAtomic(join(dir, 'metrics.json'), JSON.stringify(metricsJson(r), null, 2) + '\n');
  await writeFileAtomic(join(dir, 'metrics.md'), `# ${r.title}\n\n${metricsMarkdown(r)}`);
  await writeFileAtomic(join(dir, 'metrics.csv'), metricsCsv(r));
  await writeFileAtomic(join(dir, 'scores.csv'), imageScoresCsv(r));
}

/** Unreadable images left out, per split (images of runs made before splits were recorded count as train). */
export function skippedPerSplit(skipped: readonly Skipped[]): Record<SplitName, number> {
  const out: Record<SplitName, number> = { train: 0, validation: 0, test: 0 };
  for (const s of skipped) out[s.split ?? 'train']++;
  return out;
}
