/**
 * A seeded defect synthesiser for validation: it applies realistic defects to real normal images
 * and returns exact masks, so checkpoints and settings can be ranked with the seven metrics without
 * touching the test split. The kinds follow the self-supervised anomaly literature: cut-paste of a
 * patch from another image (CutPaste, Li et al. 2021), Perlin-noise texture blends (DRAEM, Zavrtanik
 * et al. 2021), scratches, spots, and missing parts.
 *
 * Works on host tensors `[N, 3, H, W]` in any affine pixel convention (the pipeline's
 * ImageNet-normalised one included): every defect colour is a mix of pixels or per-channel
 * statistics of the images themselves, so no unit is assumed.
 */
import { Rng, mask as maskTensor, tensor, type HostTensor } from '@diad/core';
import { valueNoise } from './synthetic/canvas.js';

/** The defect kinds, in the order {@link synthesizeDefects} cycles through them. */
export const DEFECT_KINDS = ['cutpaste', 'scratch', 'spot', 'texture', 'missing'] as const;
export type DefectKind = (typeof DEFECT_KINDS)[number];

/** The kinds that need no second image (what a single image without donors can get). */
export const SELF_CONTAINED_KINDS: readonly DefectKind[] = ['scratch', 'spot', 'missing'];

/** Options of {@link synthesizeDefects}. */
export interface DefectOptions {
  /** Seed: equal seeds and inputs give equal outputs. */
  seed: number;
  /** Kinds to use, cycled over the images (image i gets `kinds[i % kinds.length]`); default all. */
  kinds?: readonly DefectKind[];
  /**
   * Donor images `[M, 3, H, W]` (same size, same convention) for cut-paste and texture blends;
   * default: the other images of `images` (then at least two are needed for those kinds).
   */
  donors?: HostTensor;
  /**
   * Size factor (> 0, default 1): multiplies every region's radius and a scratch's length. Real
   * defects are often far smaller than the default regions (3-22 % of the shorter side in radius).
   */
  scale?: number;
  /**
   * Strength factor in (0, 1] (default 1): multiplies every blend weight, so 0.5 moves each pixel
   * half as far towards the defect colour (never less than the smallest visible change).
   */
  contrast?: number;
}

/** Defective copies of the inputs, with masks that are exactly the changed pixels. */
export interface SynthesizedDefects {
  /** `[N, 3, H, W]`, same convention as the input. */
  images: HostTensor;
  /** `[N, 1, H, W]`, 1 where the pixel was changed, 0 where it equals the input bit for bit. */
  masks: HostTensor<'uint8'>;
  /** The kind applied to each image. */
  kinds: DefectKind[];
}

/**
 * Applies one synthetic defect to each image.
 * Every defect region (at default scale at least 0.2 % of the image; never under a 2-pixel radius)
 * lies inside its central 80 %, and changes every pixel of its mask (the defect colour is pushed
 * away from the original where a blend would leave a pixel as it was).
 * @param images `[N, 3, H, W]` normal images (NCHW), H and W at least 16.
 * @throws Error when `images` or `donors` are not `[*, 3, H, W]` of one size, when a kind is unknown,
 *   when cut-paste / texture are asked for with a single image and no donors, or when `scale` is not
 *   positive or `contrast` not in (0, 1].
 */
export function synthesizeDefects(images: HostTensor, options: DefectOptions): SynthesizedDefects {
  const s = images.shape;
  if (s.length !== 4 || s[1] !== 3 || s[2] < 16 || s[3] < 16) {
    throw new Error(`synthesizeDefects: images must be [N, 3, H, W] with H, W >= 16, got [${s.join(', ')}]`);
  }
  const [n, , h, w] = s;
  const kinds = options.kinds ?? DEFECT_KINDS;
  if (kinds.length === 0) throw new Error('synthesizeDefects: kinds is empty');
  for (const k of kinds) if (!DEFECT_KINDS.includes(k)) throw new Error(`synthesizeDefects: unknown defect kind "${k}"; known: ${DEFECT_KINDS.join(', ')}`);
  const donors = options.donors ?? images;
  const d = donors.shape;
  if (d.length !== 4 || d[1] !== 3 || d[2] !== h || d[3] !== w) {
    throw new Error(`synthesizeDefects: donors must be [M, 3, ${h}, ${w}] like the images, got [${d.join(', ')}]`);
  }
  const scale = options.scale ?? 1;
  const contrast = options.contrast ?? 1;
  if (!(scale > 0 && Number.isFinite(scale))) throw new Error(`synthesizeDefects: scale must be a positive number, got ${scale}`);
  if (!(contrast > 0 && contrast <= 1)) throw new Error(`synthesizeDefects: contrast must be in (0, 1], got ${contrast}`);
  const needsDonor = kinds.some((k) => k === 'cutpaste' || k === 'texture');
  if (needsDonor && !options.donors && n < 2)
    throw new Error('synthesizeDefects: cut-paste and texture defects need a second image: pass donors or at least two images');

  const hw = h * w;
  const out = new Float32Array(images.data);
  const masks = new Uint8Array(n * hw);
  const applied: DefectKind[] = [];
  for (let i = 0; i < n; i++) {
    // One generator stream per image index: image i's defect does not depend on the other images' kinds.
    const rng = new Rng(options.seed, 1000 + i);
    const kind = kinds[i % kinds.length];
    const img = out.subarray(i * 3 * hw, (i + 1) * 3 * hw);
    const orig = images.data.subarray(i * 3 * hw, (i + 1) * 3 * hw);
    let donorIndex = rng.int(0, donors.shape[0] - 1);
    if (!options.donors && donorIndex === i) donorIndex = (i + 1) % n;
    const donor = donors.data.subarray(donorIndex * 3 * hw, (donorIndex + 1) * 3 * hw);
    // alpha in [0, 1] per pixel and the colour each pixel moves towards.
    const alpha = new Float32Array(hw);
    const target = new Float32Array(3 * hw);
    DEFECTS[kind]({ rng, h, w, orig, donor, alpha, target, scale });
    const m = masks.subarray(i * hw, (i + 1) * hw);
    const spread = channelSpread(orig, hw);
    const means = [0, 1, 2].map((c) => mean(orig, c, hw));
    for (let p = 0; p < hw; p++) {
      if (alpha[p] <= 0) continue;
      let changed = 0;
      for (let c = 0; c < 3; c++) {
        const k = c * hw + p;
        img[k] = orig[k] + contrast * alpha[p] * (target[k] - orig[k]);
        changed = Math.max(changed, Math.abs(img[k] - orig[k]) / spread[c]);
      }
      if (changed < MIN_CHANGE) {
        // A blend that left the pixel (almost) as it was: push it visibly away, so the mask stays exact.
        for (let c = 0; c < 3; c++) img[c * hw + p] = orig[c * hw + p] + MIN_CHANGE * 4 * spread[c] * (orig[c * hw + p] > means[c] ? -1 : 1);
      }
      m[p] = 1;
    }
    applied.push(kind);
  }
  return { images: tensor(out, [n, 3, h, w], images.layout), masks: maskTensor(masks, [n, 1, h, w]), kinds: applied };
}

/** Smallest change of a masked pixel, as a fraction of the channel's spread in the image. */
const MIN_CHANGE = 0.04;

interface DefectContext {
  rng: Rng;
  h: number;
  w: number;
  /** The normal image `[3, H, W]`. */
  orig: Float32Array;
  /** Another image `[3, H, W]` (cut-paste and texture sources). */
  donor: Float32Array;
  /** Written: per-pixel blend weight (0 = untouched). */
  alpha: Float32Array;
  /** Written: per-pixel colour the blend moves towards, `[3, H, W]`. */
  target: Float32Array;
  /** Size factor of regions and scratches ({@link DefectOptions.scale}). */
  scale: number;
}

const DEFECTS: Record<DefectKind, (c: DefectContext) => void> = {
  /** A patch of another image, flipped and brightness-shifted, pasted over an irregular blob. */
  cutpaste({ rng, h, w, donor, alpha, target, orig, scale }) {
    const region = blob(rng, h, w, 0.06 * scale, 0.16 * scale);
    const dy = rng.int(-Math.floor(h / 3), Math.floor(h / 3));
    const dx = rng.int(-Math.floor(w / 3), Math.floor(w / 3));
    const flip = rng.uniform() < 0.5;
    const spread = channelSpread(orig, h * w);
    const shift = (rng.uniform() < 0.5 ? -1 : 1) * (0.1 + 0.2 * rng.uniform());
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        if (!region[p]) continue;
        const sy = clampInt(y + dy, h);
        const sx = clampInt(flip ? w - 1 - x + dx : x + dx, w);
        for (let c = 0; c < 3; c++) target[c * h * w + p] = donor[c * h * w + sy * w + sx] + shift * spread[c];
        alpha[p] = 1;
      }
  },
  /** A thin curved line, darker or brighter than the surface. */
  scratch({ rng, h, w, orig, alpha, target, scale }) {
    const hw = h * w;
    const width = Math.max(1, Math.round(Math.min(h, w) / 128));
    const length = Math.min(h, w) * scale * (0.2 + 0.3 * rng.uniform());
    let y = h * (0.2 + 0.6 * rng.uniform());
    let x = w * (0.2 + 0.6 * rng.uniform());
    let angle = rng.uniform() * 2 * Math.PI;
    const ext = extremes(orig, hw, rng.uniform() < 0.5);
    for (let t = 0; t < length; t += 0.5) {
      angle += (rng.uniform() - 0.5) * 0.15;
      y += 0.5 * Math.sin(angle);
      x += 0.5 * Math.cos(angle);
      for (let oy = -width + 1; oy < width; oy++)
        for (let ox = -width + 1; ox < width; ox++) {
          const py = Math.round(y) + oy;
          const px = Math.round(x) + ox;
          if (py < 0 || px < 0 || py >= h || px >= w) continue;
          const p = py * w + px;
          alpha[p] = 0.85;
          for (let c = 0; c < 3; c++) target[c * hw + p] = ext[c];
        }
    }
  },
  /** A soft-coloured blob: a stain, a dent's shadow or a bright reflection. */
  spot({ rng, h, w, orig, alpha, target, scale }) {
    const hw = h * w;
    const region = blob(rng, h, w, 0.03 * scale, 0.09 * scale);
    const ext = extremes(orig, hw, rng.uniform() < 0.5);
    const tint = [0, 1, 2].map(() => 0.7 + 0.3 * rng.uniform());
    const strength = 0.5 + 0.4 * rng.uniform();
    for (let p = 0; p < hw; p++) {
      if (!region[p]) continue;
      alpha[p] = strength;
      for (let c = 0; c < 3; c++) target[c * hw + p] = ext[c] * tint[c] + mean(orig, c, hw) * (1 - tint[c]);
    }
  },
  /**
   * Another image's texture, turned 90 degrees (both axes flipped when not square) and half the time
   * contrast-inverted and brightness-shifted, so it differs even from a same-class donor, blended in
   * where multi-octave noise exceeds a threshold inside a window (DRAEM).
   */
  texture({ rng, h, w, donor, alpha, target, orig, scale }) {
    const hw = h * w;
    const noise = fractalNoise(rng, h, w);
    // Keep the region inside one window, so it reads as a local defect and not a global change.
    const window = blob(rng, h, w, 0.1 * scale, 0.22 * scale);
    const opacity = 0.5 + 0.4 * rng.uniform();
    const invert = rng.uniform() < 0.5;
    const means = [0, 1, 2].map((c) => mean(donor, c, hw));
    const spread = channelSpread(orig, hw);
    const shift = (rng.uniform() < 0.5 ? -1 : 1) * (0.15 + 0.2 * rng.uniform());
    const source = (p: number, c: number) => {
      const y = Math.floor(p / w);
      const x = p % w;
      const q = h === w ? x * w + y : (h - 1 - y) * w + (w - 1 - x);
      const v = donor[c * hw + q];
      return (invert ? 2 * means[c] - v : v) + shift * spread[c];
    };
    let any = false;
    for (let p = 0; p < hw; p++) {
      if (!window[p] || noise[p] < 0.45) continue;
      any = true;
      alpha[p] = opacity;
      for (let c = 0; c < 3; c++) target[c * hw + p] = source(p, c);
    }
    // A window that missed the noise: the whole window, so every defect is visible.
    if (!any)
      for (let p = 0; p < hw; p++)
        if (window[p]) {
          alpha[p] = opacity;
          for (let c = 0; c < 3; c++) target[c * hw + p] = source(p, c);
        }
  },
  /** A piece gone: the blob shows a flat background colour (the median of the image border). */
  missing({ rng, h, w, orig, alpha, target, scale }) {
    const hw = h * w;
    const region = blob(rng, h, w, 0.05 * scale, 0.12 * scale);
    const bg = [0, 1, 2].map((c) => borderMedian(orig, c, h, w));
    for (let p = 0; p < hw; p++) {
      if (!region[p]) continue;
      alpha[p] = 1;
      for (let c = 0; c < 3; c++) target[c * hw + p] = bg[c];
    }
  },
};

/**
 * An irregular blob inside the central 80 % of the image: an ellipse whose radius is modulated by
 * three random harmonics of the angle. Radii are fractions of the shorter side.
 */
function blob(rng: Rng, h: number, w: number, minRadius: number, maxRadius: number): Uint8Array {
  const side = Math.min(h, w);
  // At least 2 pixels, at most what fits the central 80 % (a large `scale` saturates).
  const rMax = Math.min(0.4 * side, Math.max(2, maxRadius * side));
  const rMin = Math.min(rMax, Math.max(2, minRadius * side));
  const r = rMin + (rMax - rMin) * rng.uniform();
  const aspect = 0.5 + rng.uniform();
  const cy = h * 0.1 + r + (h * 0.8 - 2 * r) * rng.uniform();
  const cx = w * 0.1 + r + (w * 0.8 - 2 * r) * rng.uniform();
  const harmonics = [2, 3, 5].map((k) => ({ k, amp: 0.12 * rng.uniform(), phase: rng.uniform() * 2 * Math.PI }));
  const out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const dy = (y - cy) / (r * aspect);
      const dx = (x - cx) / r;
      const theta = Math.atan2(dy, dx);
      const edge = 1 + harmonics.reduce((a, { k, amp, phase }) => a + amp * Math.sin(k * theta + phase), 0);
      if (Math.hypot(dy, dx) <= edge) out[y * w + x] = 1;
    }
  return out;
}

/** Three octaves of smooth value noise in [0, 1] (a Perlin-like field), `[h, w]` row-major. */
function fractalNoise(rng: Rng, h: number, w: number): Float32Array {
  const out = new Float32Array(h * w);
  for (const [cells, weight] of [
    [4, 0.5],
    [8, 0.3],
    [16, 0.2],
  ] as const) {
    const octave = valueNoise(rng, h, cells, w);
    for (let p = 0; p < out.length; p++) out[p] += weight * octave[p];
  }
  return out;
}

function clampInt(v: number, n: number): number {
  return Math.min(n - 1, Math.max(0, v));
}

function mean(img: Float32Array, c: number, hw: number): number {
  let s = 0;
  for (let p = 0; p < hw; p++) s += img[c * hw + p];
  return s / hw;
}

/** Per-channel 2nd-98th percentile range of an image (at least 1e-3, so flat images still change). */
function channelSpread(img: Float32Array, hw: number): number[] {
  return [0, 1, 2].map((c) => {
    const [lo, hi] = percentiles(img.subarray(c * hw, (c + 1) * hw), 0.02, 0.98);
    return Math.max(hi - lo, 1e-3);
  });
}

/** Per-channel dark (2nd percentile minus a margin) or bright (98th plus a margin) colour of an image. */
function extremes(img: Float32Array, hw: number, dark: boolean): number[] {
  return [0, 1, 2].map((c) => {
    const [lo, hi] = percentiles(img.subarray(c * hw, (c + 1) * hw), 0.02, 0.98);
    const margin = 0.25 * Math.max(hi - lo, 1e-3);
    return dark ? lo - margin : hi + margin;
  });
}

function percentiles(v: Float32Array, a: number, b: number): [number, number] {
  const step = Math.max(1, Math.floor(v.length / 4096));
  const xs: number[] = [];
  for (let i = 0; i < v.length; i += step) xs.push(v[i]);
  xs.sort((p, q) => p - q);
  return [xs[Math.floor(a * (xs.length - 1))], xs[Math.floor(b * (xs.length - 1))]];
}

function borderMedian(img: Float32Array, c: number, h: number, w: number): number {
  const hw = h * w;
  const xs: number[] = [];
  for (let x = 0; x < w; x++) xs.push(img[c * hw + x], img[c * hw + (h - 1) * w + x]);
  for (let y = 1; y < h - 1; y++) xs.push(img[c * hw + y * w], img[c * hw + y * w + w - 1]);
  xs.sort((p, q) => p - q);
  return xs[Math.floor(xs.length / 2)];
}
