/** The report of `diad test`: metric files, strips, `report.html`. */
export * from './types.js';
export * from './tables.js';
export * from './strip.js';
export * from './svg.js';
export * from './html.js';

import { writeMetricFiles } from './tables.js';
import { writeReportHtml } from './html.js';
import type { ReportInput } from './types.js';

/** Writes `metrics.{json,md,csv}` and `report.html` into `dir` (strips must already be there). */
export async function writeReport(dir: string, r: ReportInput): Promise<void> {
  await writeMetricFiles(dir, r);
  await writeReportHtml(dir, r);
}
export * from './curves.js';
export * from './screenshot.js';
