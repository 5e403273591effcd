import type { Rng } from '@diad/core';
import { between, blendPixel, setPixel, type Rgb } from './canvas.js';
import type { Rendered } from './classes.js';

/**
 * Paints one defect into a rendered good image, in place, and returns its exact mask (1 where a
 * pixel was altered by the defect, size*size bytes). Every altered pixel is in the mask and every
 * mask pixel is altered (painted with a colour of its own), so the mask is the ground truth.
 */
export type DefectPainter = (rng: Rng, img: Rendered) => Uint8Array;

/** A point where a defect may sit: anywhere (with a margin) on textures, in the inner disc on objects. */
function site(rng: Rng, img: Rendered): [number, number] {
  const size = img.canvas.size;
  if (img.disc) {
    const a = between(rng, 0, 2 * Math.PI);
    const d = img.disc.r * Math.sqrt(rng.uniform()) * 0.7;
    return [img.disc.cx + d * Math.cos(a), img.disc.cy + d * Math.sin(a)];
  }
  return [between(rng, 0.15, 0.85) * size, between(rng, 0.15, 0.85) * size];
}

/** Marks the pixels whose centre lies within `rad` of (x, y), restricted to the object. */
function stamp(mask: Uint8Array, img: Rendered, x: number, y: number, rad: number): void {
  const size = img.canvas.size;
  const r = Math.max(rad, 0.5);
  for (let py = Math.max(0, Math.floor(y - r)); py <= Math.min(size - 1, Math.ceil(y + r)); py++) {
    for (let px = Math.max(0, Math.floor(x - r)); px <= Math.min(size - 1, Math.ceil(x + r)); px++) {
      const i = py * size + px;
      if (Math.hypot(px + 0.5 - x, py + 0.5 - y) <= r && img.inside(i)) mask[i] = 1;
    }
  }
}

/** A thin curved line (quadratic Bezier), lighter or darker than the surface. */
export const scratch: DefectPainter = (rng, img) => {
  const size = img.canvas.size;
  const mask = new Uint8Array(size * size);
  const [x0, y0] = site(rng, img);
  const len = size * between(rng, 0.2, 0.35);
  const a = between(rng, 0, 2 * Math.PI);
  const x2 = x0 + len * Math.cos(a);
  const y2 = y0 + len * Math.sin(a);
  const bend = len * between(rng, -0.25, 0.25);
  const x1 = (x0 + x2) / 2 - bend * Math.sin(a);
  const y1 = (y0 + y2) / 2 + bend * Math.cos(a);
  const half = Math.max(0.5, (size / 256) * between(rng, 0.8, 1.6));
  const steps = Math.ceil(len * 2);
  for (let k = 0; k <= steps; k++) {
    const t = k / steps;
    const x = (1 - t) * (1 - t) * x0 + 2 * (1 - t) * t * x1 + t * t * x2;
    const y = (1 - t) * (1 - t) * y0 + 2 * (1 - t) * t * y1 + t * t * y2;
    stamp(mask, img, x, y, half);
  }
  const light = rng.uniform() < 0.5;
  const col: Rgb = light ? [0.97, 0.97, 0.95] : [0.04, 0.04, 0.05];
  paint(img, mask, (i) => blendPixel(img.canvas, i, col, 0.8));
  return mask;
};

/** A stain: an elliptical blotch tinted towards a rust or dark colour. */
export const spot: DefectPainter = (rng, img) => {
  const size = img.canvas.size;
  const mask = new Uint8Array(size * size);
  const [cx, cy] = site(rng, img);
  const rx = size * between(rng, 0.03, 0.06);
  const ry = rx * between(rng, 0.6, 1.2);
  const th = between(rng, 0, Math.PI);
  const cos = Math.cos(th);
  const sin = Math.sin(th);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const u = (dx * cos + dy * sin) / rx;
      const v = (-dx * sin + dy * cos) / ry;
      if (u * u + v * v <= 1 && img.inside(y * size + x)) mask[y * size + x] = 1;
    }
  }
  if (!mask.includes(1)) stamp(mask, img, cx, cy, 0.5);
  const col: Rgb = rng.uniform() < 0.5 ? [0.55, 0.22, 0.08] : [0.15, 0.12, 0.1];
  paint(img, mask, (i) => blendPixel(img.canvas, i, col, 0.7));
  return mask;
};

/** A hole: a round dark pit with a bright rim. */
export const hole: DefectPainter = (rng, img) => {
  const size = img.canvas.size;
  const mask = new Uint8Array(size * size);
  const [cx, cy] = site(rng, img);
  const r = size * between(rng, 0.02, 0.04);
  const rim = Math.max(1, size / 128);
  stamp(mask, img, cx, cy, r + rim);
  paint(img, mask, (i) => {
    const x = (i % size) + 0.5;
    const y = Math.floor(i / size) + 0.5;
    setPixel(img.canvas, i, Math.hypot(x - cx, y - cy) <= r ? [0.02, 0.02, 0.02] : [0.9, 0.88, 0.85]);
  });
  return mask;
};

/** A missing part of a round object: a bite out of its edge showing the background. */
export const missingPart: DefectPainter = (rng, img) => {
  const { disc, background } = img;
  if (!disc || !background) throw new Error('missing_part needs an object class');
  const size = img.canvas.size;
  const mask = new Uint8Array(size * size);
  const a = between(rng, 0, 2 * Math.PI);
  const bx = disc.cx + disc.r * Math.cos(a);
  const by = disc.cy + disc.r * Math.sin(a);
  stamp(mask, img, bx, by, disc.r * between(rng, 0.25, 0.4));
  paint(img, mask, (i) => setPixel(img.canvas, i, [background.rgb[i * 3], background.rgb[i * 3 + 1], background.rgb[i * 3 + 2]]));
  return mask;
};

/** Missing threads in a weave: a band along the warp or weft where the fabric is open (dark). */
export const missingThread: DefectPainter = (rng, img) => {
  const size = img.canvas.size;
  const mask = new Uint8Array(size * size);
  const period = img.period ?? Math.max(4, Math.round(size / 22));
  const vertical = rng.uniform() < 0.5;
  const across = Math.floor(between(rng, 0.15, 0.85) * size);
  const width = Math.max(2, Math.round(period * between(rng, 0.6, 1)));
  const len = Math.round(size * between(rng, 0.25, 0.5));
  const start = Math.floor(between(rng, 0.05, 0.95) * (size - len));
  for (let s = start; s < start + len; s++) {
    for (let w = across; w < Math.min(size, across + width); w++) mask[vertical ? s * size + w : w * size + s] = 1;
  }
  paint(img, mask, (i) => {
    const l = 0.08 + 0.04 * rng.uniform();
    setPixel(img.canvas, i, [l, l * 0.9, l * 0.8]);
  });
  return mask;
};

function paint(_img: Rendered, mask: Uint8Array, f: (i: number) => void): void {
  for (let i = 0; i < mask.length; i++) if (mask[i]) f(i);
}
