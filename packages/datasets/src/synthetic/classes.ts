import type { Rng } from '@diad/core';
import { between, newCanvas, pixelNoise, setPixel, valueNoise, type Canvas, type Rgb } from './canvas.js';

/**
 * A good image of a synthetic class plus what its defects need to know: `inside(i)` tells
 * whether pixel i belongs to the object (always true for textures), and `background` renders the
 * pixels an object covers when a part of it goes missing.
 */
export interface Rendered {
  readonly canvas: Canvas;
  readonly inside: (i: number) => boolean;
  readonly background?: Canvas;
  /** Centre and radius of the object in pixels (disc only). */
  readonly disc?: { readonly cx: number; readonly cy: number; readonly r: number };
  /** Period of the weave in pixels (woven only). */
  readonly period?: number;
}

/**
 * Woven fabric: vertical warp and horizontal weft threads in a plain weave (over/under by cell
 * parity), each thread shaded across its width, with per-image phase, colour and period jitter.
 */
export function renderWoven(rng: Rng, size: number): Rendered {
  const c = newCanvas(size);
  const period = Math.max(4, Math.round(size / between(rng, 20, 24)));
  const px = rng.int(0, period - 1);
  const py = rng.int(0, period - 1);
  const hue: Rgb = [between(rng, 0.62, 0.7), between(rng, 0.52, 0.58), between(rng, 0.36, 0.42)];
  const noise = valueNoise(rng, size, 6);
  const grain = pixelNoise(rng);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const cx = Math.floor((x + px) / period);
      const cy = Math.floor((y + py) / period);
      const ux = ((x + px) % period) / period;
      const uy = ((y + py) % period) / period;
      const warpOnTop = (cx + cy) % 2 === 0;
      // Thread profile: bright in the middle of a thread, dark at its edges.
      const shade = warpOnTop ? Math.sin(Math.PI * ux) : Math.sin(Math.PI * uy);
      const l = 0.55 + 0.4 * shade + 0.1 * (noise[y * size + x] - 0.5) + 0.03 * (grain(y * size + x) - 0.5);
      setPixel(c, y * size + x, [hue[0] * l, hue[1] * l, hue[2] * l]);
    }
  }
  return { canvas: c, inside: () => true, period };
}

/** Grainy surface (cast metal, stone): low-frequency mottling plus per-pixel grain. */
export function renderGrain(rng: Rng, size: number): Rendered {
  const c = newCanvas(size);
  const coarse = valueNoise(rng, size, 4);
  const fine = valueNoise(rng, size, Math.max(8, Math.round(size / 8)));
  const tint = between(rng, -0.03, 0.03);
  const grain = pixelNoise(rng);
  for (let i = 0; i < size * size; i++) {
    const l = 0.42 + 0.16 * (coarse[i] - 0.5) + 0.12 * (fine[i] - 0.5) + 0.12 * (grain(i) - 0.5);
    setPixel(c, i, [l + 0.04 + tint, l + 0.02, l - 0.02 - tint]);
  }
  return { canvas: c, inside: () => true };
}

/**
 * A round object (cap, pill, bottle seen from above) on a dark background: a shaded disc with a
 * concentric rim, its centre and radius jittered per image.
 */
export function renderDisc(rng: Rng, size: number): Rendered {
  const c = newCanvas(size);
  const bg = newCanvas(size);
  const r = size * between(rng, 0.3, 0.33);
  const cx = size / 2 + size * between(rng, -0.03, 0.03);
  const cy = size / 2 + size * between(rng, -0.03, 0.03);
  const base: Rgb = [between(rng, 0.74, 0.8), between(rng, 0.7, 0.75), between(rng, 0.6, 0.66)];
  const noise = valueNoise(rng, size, 5);
  const grain = pixelNoise(rng);
  const inDisc = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      const b = 0.1 + 0.05 * noise[i] + 0.02 * (grain(i) - 0.5);
      setPixel(bg, i, [b, b, b * 1.1]);
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const d = Math.hypot(dx, dy) / r;
      if (d <= 1) {
        inDisc[i] = 1;
        // Light from the top left, a darker rim ring, a faint concentric ridge.
        const light = 0.8 + 0.2 * (-(dx + dy) / (r * Math.SQRT2));
        const rim = d > 0.88 ? 0.7 : 1;
        const ridge = 1 - 0.06 * Math.cos(d * Math.PI * 6);
        const l = light * rim * ridge + 0.03 * (grain(i) - 0.5);
        setPixel(c, i, [base[0] * l, base[1] * l, base[2] * l]);
      } else {
        setPixel(c, i, [b, b, b * 1.1]);
      }
    }
  }
  return { canvas: c, inside: (i) => inDisc[i] === 1, background: bg, disc: { cx, cy, r } };
}
