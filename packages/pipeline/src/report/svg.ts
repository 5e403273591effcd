/**
 * Inline SVG line charts for the report (ROC and PRO curves): no scripts, no external files, so
 * `report.html` opens offline.
 */
import type { Curve } from './types.js';

export interface Series {
  label: string;
  curve: Curve;
  color: string;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Keeps at most `max` points of a curve (evenly by index, ends kept), for small SVGs. */
export function thin(c: Curve, max = 200): Curve {
  const n = c.x.length;
  if (n <= max) return c;
  const idx = Array.from({ length: max }, (_, i) => Math.round((i * (n - 1)) / (max - 1)));
  return { x: idx.map((i) => c.x[i]), y: idx.map((i) => c.y[i]) };
}

/**
 * A line chart.
 * @param xMax right end of the x axis (1 for ROC, 0.3 for PRO), y runs 0..1.
 * @param diagonal draw the chance line y = x.
 */
export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], xMax = 1, diagonal = false): string {
  const W = 320,
    H = 260,
    L = 44,
    R = 10,
    T = 24,
    B = 40;
  const pw = W - L - R,
    ph = H - T - B;
  const px = (x: number) => L + (Math.min(x, xMax) / xMax) * pw;
  const py = (y: number) => T + (1 - Math.min(Math.max(y, 0), 1)) * ph;
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const grid = ticks
    .map(
      (t) =>
        `<line x1="${L}" x2="${L + pw}" y1="${py(t)}" y2="${py(t)}" stroke="#ddd"/><text x="${L - 4}" y="${py(t) + 4}" text-anchor="end" font-size="10">${t}</text>` +
        `<line y1="${T}" y2="${T + ph}" x1="${px(t * xMax)}" x2="${px(t * xMax)}" stroke="#ddd"/><text x="${px(t * xMax)}" y="${T + ph + 14}" text-anchor="middle" font-size="10">${+(t * xMax).toFixed(3)}</text>`,
    )
    .join('');
  const lines = series
    .map((s) => {
      const c = thin(s.curve);
      const pts = c.x
        .map((x, i) => (x <= xMax + 1e-12 ? `${px(x).toFixed(1)},${py(c.y[i]).toFixed(1)}` : ''))
        .filter(Boolean)
        .join(' ');
      return `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts}"/>`;
    })
    .join('');
  const legend = series
    .map(
      (s, i) =>
        `<text x="${L + pw - 4}" y="${T + ph - 8 - 13 * (series.length - 1 - i)}" text-anchor="end" font-size="11" fill="${s.color}">${esc(s.label)}</text>`,
    )
    .join('');
  const diag = diagonal ? `<line x1="${px(0)}" y1="${py(0)}" x2="${px(xMax)}" y2="${py(xMax)}" stroke="#999" stroke-dasharray="4 3"/>` : '';
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" role="img" aria-label="${esc(title)}">` +
    `<text x="${W / 2}" y="15" text-anchor="middle" font-size="12" font-weight="bold">${esc(title)}</text>` +
    `${grid}<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>${diag}${lines}${legend}` +
    `<text x="${L + pw / 2}" y="${H - 6}" text-anchor="middle" font-size="11">${esc(xLabel)}</text>` +
    `<text transform="translate(12 ${T + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">${esc(yLabel)}</text></svg>`
  );
}
