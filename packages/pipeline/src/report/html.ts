/**
 * `report.html`: one self-contained file (inline CSS and SVG, the best and worst strips embedded
 * as data URIs) that opens offline: metric tables in both modes, ROC and PRO curves per class,
 * best and worst images, every image's score, the run's config and timings, skipped images.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@diad/core';
import { lineChart } from './svg.js';
import { METRIC_LABELS, METRIC_NAMES, formatPercent } from '@diad/metrics';
import { METRIC_MODES, type ImageRecord, type ReportInput } from './types.js';
import { skippedPerSplit } from './tables.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const pct = (v: number | null) => formatPercent(v);

/** Per class: defective images scored highest (best), defective scored lowest and normal scored highest (worst). */
export function bestAndWorst(images: ImageRecord[], perGroup = 2): { best: ImageRecord[]; worst: ImageRecord[] } {
  const best: ImageRecord[] = [];
  const worst: ImageRecord[] = [];
  for (const cls of [...new Set(images.map((i) => i.className))]) {
    const bad = images.filter((i) => i.className === cls && i.label === 1).sort((a, b) => b.score - a.score);
    const good = images.filter((i) => i.className === cls && i.label === 0).sort((a, b) => b.score - a.score);
    best.push(...bad.slice(0, perGroup));
    worst.push(...bad.slice(Math.max(perGroup, bad.length - perGroup)).reverse(), ...good.slice(0, perGroup));
  }
  return { best, worst };
}

async function figure(dir: string, img: ImageRecord, why: string): Promise<string> {
  let src = '';
  try {
    src = `data:image/png;base64,${(await fs.readFile(join(dir, img.strip))).toString('base64')}`;
  } catch {
    return `<figure><figcaption>${esc(img.id)}: strip missing</figcaption></figure>`;
  }
  return `<figure><img src="${src}" alt="${esc(img.id)}"><figcaption>${esc(why)}: <b>${esc(img.className)}</b> / ${esc(img.defectType)} — score ${img.score.toFixed(4)}<br><small>${esc(img.path)}</small></figcaption></figure>`;
}

/** The validation curve (chart + table) and the chosen model's per-class validation and reconstruction errors. */
function validationHtml(v: NonNullable<ReportInput['validation']>): string {
  // The curve over training steps at the config's DDIM start (the first point's); a DDIM-start sweep shows in the table.
  const pts = v.points.filter((p) => p.stage === v.selected.stage && p.tStart === v.points[0].tStart).sort((a, b) => a.step - b.step);
  const xMax = Math.max(1, ...pts.map((p) => p.step));
  const series = (key: 'aurocImage' | 'aurocPixel' | 'auPro', label: string, color: string) => ({
    label,
    color,
    curve: { x: pts.map((p) => p.step), y: pts.map((p) => p[key] ?? NaN) },
  });
  const chart =
    pts.length > 1
      ? lineChart(
          `validation (${v.selected.stage} stage)`,
          `${v.selected.stage} step`,
          'class mean',
          [series('aurocImage', 'image AUROC', '#1f77b4'), series('aurocPixel', 'pixel AUROC', '#d62728'), series('auPro', 'AU-PRO', '#2ca02c')],
          xMax,
        )
      : '';
  const rows = v.points
    .map(
      (p) =>
        `<tr${p.stage === v.selected.stage && p.step === v.selected.step && p.tStart === v.selected.tStart ? ' class="mean"' : ''}><th>${esc(p.stage)} ${p.step}</th><td>${p.tStart ?? ''}</td><td>${pct(p.aurocImage)}</td><td>${pct(p.aurocPixel)}</td><td>${pct(p.auPro)}</td><td>${pct(p.value)}</td></tr>`,
    )
    .join('');
  const recon = Object.entries(v.reconstruction)
    .map(([c, e]) => {
      const m = v.classes[c];
      return `<tr><th>${esc(c)}</th><td>${pct(m.aurocImage)}</td><td>${pct(m.aurocPixel)}</td><td>${pct(m.auPro)}</td><td>${e.autoencoderL1.toFixed(4)}</td><td>${e.diadL1.toFixed(4)}</td><td>${e.featureDistance.toFixed(4)}</td></tr>`;
    })
    .join('');
  const d = v.defects;
  const made = d
    ? `${d.copies} defective ${d.copies === 1 ? 'copy' : 'copies'} of each with synthesised defects (cut-paste, scratch, spot, texture blend, missing part; exact masks) at ${d.scale}x the default size and ${d.contrast}x the default strength`
    : 'a synthesised defect (cut-paste, scratch, spot, texture blend, missing part; exact masks) on a copy of each';
  return `<p class="strip-legend">Normal validation images (carved from train) plus ${made}; never the test split. Selection rule: ${esc(v.rule)}. Highlighted: the chosen model.</p>
<div class="charts">${chart}<table><thead><tr><th>weights</th><th>DDIM from t</th><th>image AUROC</th><th>pixel AUROC</th><th>AU-PRO</th><th>rule value</th></tr></thead><tbody>${rows}</tbody></table></div>
<h3>Chosen model per class (validation; reconstruction errors on the normal images, ImageNet-normalised units)</h3>
<table><thead><tr><th>class</th><th>image AUROC</th><th>pixel AUROC</th><th>AU-PRO</th><th>autoencoder L1</th><th>DiAD L1</th><th>feature distance</th></tr></thead><tbody>${recon}</tbody></table>`;
}

/** The report as an HTML string; `dir` is the report folder (strips are read from it). */
export async function reportHtml(dir: string, r: ReportInput): Promise<string> {
  const tables = METRIC_MODES.map((mode) => {
    const body = [
      ...r.classes.map((c) => ({ name: c.className, row: c.metrics[mode], n: `${c.good} / ${c.defective}` })),
      { name: 'mean', row: r.mean[mode], n: '' },
    ]
      .map(
        ({ name, row, n }) =>
          `<tr${name === 'mean' ? ' class="mean"' : ''}><th>${esc(name)}</th><td>${n}</td>${METRIC_NAMES.map((k) => `<td>${pct(row[k])}</td>`).join('')}</tr>`,
      )
      .join('');
    return `<h3>${mode} mode</h3><table><thead><tr><th>class</th><th>good / defective</th>${METRIC_NAMES.map((k) => `<th>${METRIC_LABELS[k]}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table>`;
  }).join('');
  const curves = r.classes
    .map((c) => {
      const m = c.metrics.standard;
      const roc = lineChart(
        `${c.className}: ROC`,
        'false positive rate',
        'true positive rate',
        [
          { label: `image (AUROC ${pct(m.aurocImage)})`, curve: c.curves.imageRoc, color: '#1f77b4' },
          { label: `pixel (AUROC ${pct(m.aurocPixel)})`, curve: c.curves.pixelRoc, color: '#d62728' },
        ],
        1,
        true,
      );
      const pro = lineChart(
        `${c.className}: PRO`,
        'false positive rate (to 0.3)',
        'mean per-region overlap',
        [{ label: `AU-PRO ${pct(m.auPro)}`, curve: c.curves.pro, color: '#2ca02c' }],
        0.3,
      );
      return `<div class="charts">${roc}${pro}</div>`;
    })
    .join('');
  const validation = r.validation ? validationHtml(r.validation) : '<p>not recorded for this run</p>';
  const { best, worst } = bestAndWorst(r.images);
  const bestFigs = (await Promise.all(best.map((i) => figure(dir, i, 'highest-scored defective')))).join('');
  const worstFigs = (await Promise.all(worst.map((i) => figure(dir, i, i.label ? 'lowest-scored defective' : 'highest-scored normal')))).join('');
  const timings = r.timings.map((t) => `<tr><th>${esc(t.name)}</th><td>${t.seconds.toFixed(1)} s</td></tr>`).join('');
  const total = r.timings.reduce((a, t) => a + t.seconds, 0);
  const facts = Object.entries(r.facts)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join('');
  const skipped = r.skipped.length
    ? `<ul>${r.skipped.map((s) => `<li>${esc(s.split ?? 'train')}: <code>${esc(s.path)}</code>: ${esc(s.reason)}</li>`).join('')}</ul>`
    : '<p>none</p>';
  const allRows = [...r.images]
    .sort((a, b) => a.className.localeCompare(b.className) || b.score - a.score)
    .map(
      (i) =>
        `<tr><td>${esc(i.className)}</td><td>${esc(i.defectType)}</td><td>${i.score.toFixed(4)}</td><td><a href="${esc(i.strip)}">${esc(i.id)}</a></td></tr>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}tr.mean th,tr.mean td{font-weight:bold;background:#eef5ff}
.charts{display:flex;gap:12px;flex-wrap:wrap}figure{display:inline-block;margin:6px;vertical-align:top}
figure img{max-width:100%;border:1px solid #999}figcaption{font-size:12px}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
.strip-legend{font-size:12px;color:#555}
</style></head><body>
<h1>${esc(r.title)}</h1>
<table>${facts}<tr><th>config hash</th><td>${esc(r.configHash)}</td></tr><tr><th>skipped images</th><td id="skipped-count">${r.skipped.length}</td></tr><tr><th>skipped per split</th><td id="skipped-per-split">${Object.entries(
    skippedPerSplit(r.skipped),
  )
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}</td></tr></table>
<h2>Metrics (%)</h2><p class="strip-legend"><b>standard</b>: scikit-learn AUROC/AP, MVTec AU-PRO (FPR up to 0.3), image score = max of the map. <b>diad</b>: the official DiAD evaluation: image score = max after eight 8x8 average poolings, AUROC below 0.5 flipped, AU-PRO over 200 thresholds renormalised by the largest kept FPR (see @diad/metrics).</p>${tables}
<h2>ROC and PRO curves (standard mode)</h2>${curves}
<h2>Validation during fit</h2>${validation}
<h2>Best and worst images</h2><p class="strip-legend">Each strip: input | reconstruction | anomaly heatmap over the input | ground truth. Ranked by score within each class (not decisions at the threshold).</p>
<h3>Best ranked</h3>${bestFigs || '<p>no defective test images</p>'}
<h3>Worst ranked</h3>${worstFigs || '<p>none</p>'}
<h2>Timings</h2><table>${timings}<tr class="mean"><th>total</th><td>${total.toFixed(1)} s</td></tr></table>
<h2>Skipped images (${r.skipped.length})</h2>${skipped}
<h2>Run config</h2><pre>${esc(JSON.stringify(r.config, null, 2))}</pre>
<h2>All test images (${r.images.length})</h2><table><thead><tr><th>class</th><th>defect</th><th>score</th><th>strip</th></tr></thead><tbody>${allRows}</tbody></table>
</body></html>
`;
}

/** Writes `report.html` into `dir` atomically. */
export async function writeReportHtml(dir: string, r: ReportInput): Promise<void> {
  await writeFileAtomic(join(dir, 'report.html'), await reportHtml(dir, r));
}
