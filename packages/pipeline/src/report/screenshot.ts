/**
 * Renders a local HTML file in headless Chromium (Debian's `chromium` package) to a PNG, and
 * measures whether a PNG shows something: how the report test proves `report.html` renders offline.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';

/** The Chromium binary: `$CHROMIUM`, else `/usr/bin/chromium`; null when neither exists. */
export function findChromium(): string | null {
  for (const p of [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser']) if (p && existsSync(p)) return p;
  return null;
}

/**
 * Screenshots `htmlPath` at `width x height` into `pngPath`, with networking and background
 * services off and a fresh profile (so nothing outside the file can be fetched).
 * @throws Error with Chromium's stderr when it fails or produces no PNG within `timeoutMs`.
 */
export async function screenshot(chromium: string, htmlPath: string, pngPath: string, width = 1280, height = 2000, timeoutMs = 90_000): Promise<void> {
  const profile = mkdtempSync(join(tmpdir(), 'diad-chromium-'));
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    `--user-data-dir=${profile}`,
    `--screenshot=${resolve(pngPath)}`,
    `--window-size=${width},${height}`,
    pathToFileURL(resolve(htmlPath)).href,
  ];
  try {
    await new Promise<void>((ok, fail) =>
      execFile(chromium, args, { timeout: timeoutMs }, (err, _out, stderr) =>
        err && !existsSync(pngPath) ? fail(new Error(`chromium failed on ${htmlPath}: ${err.message}\n${stderr}`)) : ok(),
      ),
    );
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
  if (!existsSync(pngPath)) throw new Error(`chromium wrote no screenshot for ${htmlPath}`);
}

/** Size and the per-channel standard deviation (mean over channels) of a PNG's pixels. */
export async function imageStats(pngPath: string): Promise<{ width: number; height: number; std: number; nonWhite: number }> {
  const { data, info } = await sharp(pngPath).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  let std = 0;
  for (let c = 0; c < info.channels; c++) {
    let s = 0,
      s2 = 0;
    for (let i = 0; i < n; i++) {
      const v = data[i * info.channels + c];
      s += v;
      s2 += v * v;
    }
    std += Math.sqrt(Math.max(0, s2 / n - (s / n) ** 2)) / info.channels;
  }
  let nonWhite = 0;
  for (let i = 0; i < n; i++) if (data[i * info.channels] < 240 || data[i * info.channels + 1] < 240 || data[i * info.channels + 2] < 240) nonWhite++;
  return { width: info.width, height: info.height, std, nonWhite: nonWhite / n };
}
